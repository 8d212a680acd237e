"""One case as a task: what a worker (or this process) does with it.

A :class:`Session` holds what is built once per worker and reused for every case of a run: the
registry, the dataset, the components (models) and the feature cache. :func:`run_case` writes a
case into its own staging folder, records its provenance there and renames the folder into place
(so a case is never written twice under its final name); a failing case comes back as a
``failed`` :class:`CaseOutcome`, never as an exception.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medfeat.cohort.cases import CaseRef
from medfeat.cohort.kinds import Kind, kind_of
from medfeat.cohort.outputs import STAGING
from medfeat.config.resolve import ResolvedPipeline
from medfeat.context import RunContext
from medfeat.errors import MedfeatError
from medfeat.pipelines.runner import Run


@dataclass(frozen=True)
class Job:
    """What every task of a run carries (pickled to the workers)."""

    run_id: str
    resolved: ResolvedPipeline
    out_dir: Path
    protected: frozenset[Path]
    config_inputs: tuple[Path, ...]
    fingerprint: str
    command: tuple[str, ...]


@dataclass
class CaseOutcome:
    """How a case ended: ``done`` (``metrics``, ``record``, ``outputs``), ``failed`` (``message``)
    or ``setup-failed`` (the worker could not build the pipeline: no case can run)."""

    case_id: str
    status: str
    metrics: dict[str, Any] | None = None
    record: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    message: str | None = None
    title: str | None = None
    traceback: str | None = None
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    random_weights: list[str] = field(default_factory=list)
    worker: str = ""
    duplicate: bool = False


@dataclass
class Session:
    """A run's dataset and components, built once per worker process (or once in-process)."""

    run: Run
    dataset: Any
    kind: Kind
    parts: Any

    @classmethod
    def build(cls, job: Job, context: RunContext, registry: Any | None = None) -> Session:
        if registry is None:
            from medfeat.plugins import get_registry

            registry = get_registry()
        run = Run(job.resolved, registry, context, job.out_dir)
        run.protect(job.protected)
        context.out_dir = job.out_dir
        kind = kind_of(job.resolved.pipeline.kind)
        kind.check(run)
        return cls(run, run.build("data"), kind, kind.build(run))

    def load(self, case_id: str) -> Any:
        return self.dataset.load_case(case_id)


_SESSIONS: dict[str, Session] = {}
_SESSIONS_LOCK = threading.Lock()


def worker_session(job: Job) -> Session:
    """This worker process's session for ``job``'s run (built on its first case; a new run
    replaces the previous one)."""
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(job.run_id)
        if session is None:
            from medfeat.context import resolve_device
            from medfeat.progress import Progress

            _SESSIONS.clear()
            _use_thread_budget()
            pipeline = job.resolved.pipeline
            context = RunContext(
                device=resolve_device(pipeline.device),
                seed=pipeline.seed,
                progress=Progress(enabled=False, verbosity=-1),
            )
            session = _SESSIONS[job.run_id] = Session.build(job, context)
        return session


def _use_thread_budget() -> None:
    """Give torch the worker's share of the CPU cores (``OMP_NUM_THREADS``, set per worker)."""
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        import torch

        torch.set_num_threads(int(threads))


def _failure(case_id: str, exc: BaseException, status: str = "failed") -> CaseOutcome:
    if isinstance(exc, MedfeatError):
        return CaseOutcome(case_id, status, message=str(exc), title=exc.title)
    if isinstance(exc, MemoryError):
        return CaseOutcome(case_id, status, message="ran out of memory.", title="Resource error")
    return CaseOutcome(
        case_id,
        status,
        message=f"internal error: {type(exc).__name__}: {exc}",
        title="Internal error",
        traceback=traceback.format_exc(),
    )


def run_case(job: Job, ref: CaseRef, case: Any = None, session: Session | None = None) -> Any:
    """Run one case (loading it by id when ``case`` is not given); never raises for a case's own
    failure. ``session``: in-process runs pass theirs; workers build one per process."""
    from medfeat.context import seed_everything
    from medfeat.io.atomic import atomic_write_json, protecting
    from medfeat.io.checksum import remembering_checksums

    start = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    if session is None:
        try:
            session = worker_session(job)
        except Exception as exc:
            outcome = _failure(ref.id, exc, "setup-failed")
            outcome.worker = worker
            return outcome
    run, context = session.run, session.run.context
    staging = job.out_dir / STAGING / f"{ref.id}.{uuid.uuid4().hex[:8]}"
    before = dict(context.timings)
    run.staging = {ref.id: staging}
    try:
        with protecting(job.protected), remembering_checksums():
            seed_everything(job.resolved.pipeline.seed)  # the same for every case, wherever it runs
            if case is None:
                case = session.load(ref.id)
            metrics, record = session.kind.process(run, session.parts, case)
            staging.mkdir(parents=True, exist_ok=True)
            atomic_write_json(staging / "metrics.json", metrics)
            outcome = CaseOutcome(
                ref.id,
                "done",
                metrics=metrics,
                record=record,
                seconds=time.perf_counter() - start,
                timings=_delta(before, context.timings),
                random_weights=list(context.random_weights),
                worker=worker,
            )
            outcome.outputs = _write_case_provenance(job, ref, session, staging, outcome)
        outcome.duplicate = not _place(staging, job.out_dir / ref.id)
        return outcome
    except Exception as exc:
        outcome = _failure(ref.id, exc)
        outcome.seconds, outcome.worker = time.perf_counter() - start, worker
        return outcome
    finally:
        run.staging = {}
        shutil.rmtree(staging, ignore_errors=True)


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


def _write_case_provenance(
    job: Job, ref: CaseRef, session: Session, staging: Path, outcome: CaseOutcome
) -> dict[str, Any]:
    """``provenance.json`` of the case (written last): configuration fingerprint, input and
    output checksums, host, code version, command line and the folder actually used."""
    from medfeat.cohort.resume import input_checksums
    from medfeat.io.atomic import atomic_write_json
    from medfeat.provenance import code_versions, host_record, output_checksums

    outputs = output_checksums(staging)
    context = session.run.context
    atomic_write_json(
        staging / "provenance.json",
        {
            "case": ref.id,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "fingerprint": job.fingerprint,
            "input_checksums": input_checksums([*ref.inputs, *job.config_inputs]),
            "outputs": outputs,
            "case_dir": str((job.out_dir / ref.id).resolve()),
            "out_dir": str(job.out_dir.resolve()),
            "command": list(job.command),
            "seed": job.resolved.pipeline.seed,
            "device": context.device,
            "seconds": round(outcome.seconds, 3),
            "timings_s": {k: round(v, 4) for k, v in outcome.timings.items()},
            "host": host_record(),
            "code": code_versions(session.run.registry.plugins),
            **(
                {"random_weights": outcome.random_weights, "is_result": False}
                if outcome.random_weights
                else {}
            ),
            "record": outcome.record,
        },
    )
    return outputs


def _place(staging: Path, final: Path) -> bool:
    """Rename the finished staging folder to its final name; ``False`` when another attempt of
    the same case got there first (its folder stays, this one is dropped)."""
    try:
        os.rename(staging, final)
    except OSError:
        if (final / "provenance.json").is_file():
            return False
        raise
    return True
