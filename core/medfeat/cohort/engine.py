"""Run a case-by-case pipeline as a cohort.

1. List the cases and their inputs; refuse, before anything is written, an output that is or
   would replace an input, and an earlier run's folder unless resuming or overwriting.
2. Take the output folder (lock, stale temporaries removed); with ``--resume`` keep the cases
   whose outputs are complete for the same configuration and inputs.
3. Run the other cases (in-process or on Dask), recording each as it finishes in ``cohort.json``;
   a failing case is recorded and the others go on.
4. Write ``metrics.json`` and ``provenance.json`` (also when interrupted: what finished), then
   raise :class:`~medfeat.errors.Interrupted` or :class:`CasesFailed` if that is how it ended.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medfeat.cohort.cases import CaseList, CaseRef, list_cases
from medfeat.cohort.manifest import DONE, FAILED, PENDING, Manifest
from medfeat.cohort.options import CasesFailed, CohortOptions
from medfeat.cohort.outputs import (
    MANIFEST,
    OutputFolder,
    check_collisions,
    config_inputs,
    earlier_case_ids,
)
from medfeat.cohort.worker import CaseOutcome, Job, Session
from medfeat.config.resolve import ResolvedPipeline
from medfeat.context import RunContext
from medfeat.errors import InputFileError, Interrupted, MedfeatError
from medfeat.pipelines.runner import Run
from medfeat.registry import Registry


def run_cohort(
    resolved: ResolvedPipeline,
    registry: Registry,
    context: RunContext,
    out_dir: Path,
    options: CohortOptions,
) -> dict[str, Any]:
    """Run every case of a registration, correspondence or segmentation-inference pipeline;
    returns the summary written to ``metrics.json``."""
    from medfeat.cohort.kinds import kind_of
    from medfeat.cohort.resume import config_fingerprint
    from medfeat.io.checksum import remembering_checksums

    pipeline = resolved.pipeline
    out_dir = Path(out_dir)
    probe = Run(resolved, registry, context, out_dir)
    kind_of(pipeline.kind).check(probe)
    with remembering_checksums():
        cases = list_cases(pipeline.kind, probe.build("data"), pipeline.data.name)
    ids = [r.id for r in cases.refs]
    extra = config_inputs(resolved)
    protected = frozenset(
        Path(p).resolve() for p in [*extra, *(p for r in cases.refs for p in r.inputs)]
    )
    # ------------------------------------------------ refusals, before anything is written
    overwrite, resume = pipeline.output.overwrite, options.resume
    folder = OutputFolder(out_dir)
    folder.refuse_earlier_run(overwrite=overwrite, resume=resume)
    check_collisions(out_dir, ids, protected)
    earlier = set(earlier_case_ids(out_dir))
    strays = [c for c in ids if (out_dir / c).exists() and c not in earlier]
    if strays and not (overwrite or resume):
        raise InputFileError(
            f"{out_dir / strays[0]} already exists and was not written by a medfeat run here.",
            remedy="Choose another --out, or set output.overwrite=true to replace it.",
        )
    fingerprint = config_fingerprint(resolved.to_dict())
    job = Job(
        run_id=uuid.uuid4().hex[:12],
        resolved=resolved,
        out_dir=out_dir.absolute(),
        protected=protected,
        config_inputs=tuple(extra),
        fingerprint=fingerprint,
        command=tuple(sys.argv),
    )
    from medfeat.pipelines.runner import run_log, write_report

    with folder, run_log(context, out_dir):
        try:
            summary = _Cohort(job, cases, context, registry, options, folder).run()
        except CasesFailed:  # the cases that finished get their report too
            write_report(resolved, context, out_dir)
            raise
        write_report(resolved, context, out_dir)
        return summary


class _Cohort:
    """The state of one cohort run inside its held output folder."""

    def __init__(
        self,
        job: Job,
        cases: CaseList,
        context: RunContext,
        registry: Registry,
        options: CohortOptions,
        folder: OutputFolder,
    ) -> None:
        self.job, self.cases, self.context, self.registry = job, cases, context, registry
        self.options, self.folder = options, folder
        self.out_dir = job.out_dir
        self.metrics: dict[str, dict[str, Any]] = {}
        self.records: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.failed: dict[str, str] = {}
        self.executor_name = "in-process"
        self.manifest = Manifest(
            self.out_dir / MANIFEST,
            job.fingerprint,
            [r.id for r in cases.refs],
            {"out_dir": str(self.out_dir), "command": list(job.command)},
        )

    # -------------------------------------------------------------------------------- run
    def run(self) -> dict[str, Any]:
        from medfeat.interrupt import StopSignal, signals_raise

        stopped: str | None = None
        start = time.perf_counter()
        with signals_raise():
            try:
                if self.options.resume:
                    self._resume()
                executor = self._start_executor()
                try:
                    self._prepare_folder()
                    self._run_cases(executor)
                finally:
                    executor.close()
            except StopSignal as stop:
                stopped = stop.signal_name
            self.context.timings["total"] = time.perf_counter() - start
            self.manifest.state = (
                "interrupted" if stopped else "failed" if self.failed else "finished"
            )
            if stopped or self.manifest.ids(DONE):
                summary = self._write_summary()
            else:  # nothing finished: leave nothing (the failures were reported on stderr)
                summary = self._summary_without_files()
        return self._conclude(summary, stopped)

    def _summary_without_files(self) -> dict[str, Any]:
        (self.out_dir / MANIFEST).unlink(missing_ok=True)
        summary: dict[str, Any] = {"cases": {}, "failed": dict(self.failed)}
        if self.context.random_weights:
            summary = {
                "random_weights": list(self.context.random_weights),
                "is_result": False,
                **summary,
            }
        return summary

    def _resume(self) -> None:
        from medfeat.cohort.resume import why_rerun

        kept = 0
        for ref in self.cases.refs:
            case_dir = self.out_dir / ref.id
            reason = why_rerun(
                case_dir, self.job.fingerprint, [*ref.inputs, *self.job.config_inputs]
            )
            if reason is None:
                metrics = json.loads((case_dir / "metrics.json").read_text())
                record = json.loads((case_dir / "provenance.json").read_text())
                self.metrics[ref.id] = metrics
                self.records[ref.id] = record.get("record") or {}
                self.outputs[ref.id] = record.get("outputs") or {}
                self.manifest.set(ref.id, DONE, "finished by an earlier run (resumed)")
                kept += 1
            else:
                self.manifest.set(ref.id, PENDING, f"to run: {reason}")
        if kept:
            self.context.progress.log(
                f"Resuming: {kept} of {len(self.cases.refs)} case(s) already finished."
            )

    def _tasks(self) -> Iterator[tuple[CaseRef, Any]]:
        todo = {r.id for r in self.cases.refs if self.manifest.cases[r.id]["status"] == PENDING}
        if self.cases.indexed:
            yield from ((r, None) for r in self.cases.refs if r.id in todo)
            return
        refs = {r.id: r for r in self.cases.refs}
        for case in self.cases.stream():
            if case.id in todo:
                yield refs[case.id], case

    def _start_executor(self) -> Any:
        """Build the pipeline here, or start/reach the Dask cluster (before anything is written,
        so that a pipeline that cannot be built leaves the output folder as it was)."""
        from medfeat.cohort.cluster import InProcess, OnDask

        if not self.manifest.ids(PENDING):
            return InProcess(None)
        if self.options.distributed:
            executor: Any = OnDask(self.options)
        else:
            executor = InProcess(Session.build(self.job, self.context, self.registry))
        self.executor_name = executor.description
        return executor

    def _prepare_folder(self) -> None:
        """Keep the finished cases (``--resume``) or remove the earlier run (overwrite), and the
        folders of the cases about to be rewritten."""
        if self.job.resolved.pipeline.output.overwrite and not self.options.resume:
            self.folder.remove_earlier_run()
        for ref in self.cases.refs:
            if self.manifest.cases[ref.id]["status"] == PENDING:
                self.folder.remove_case(ref.id)

    def _run_cases(self, executor: Any) -> None:
        if not self.manifest.ids(PENDING):
            return
        total = len(self.cases.refs)
        for outcome in executor.run(self.job, self._tasks(), self.cases.indexed):
            self._record(outcome, total)

    def _record(self, outcome: CaseOutcome, total: int) -> None:
        progress, case_id = self.context.progress, outcome.case_id
        if outcome.status == "setup-failed":
            raise MedfeatError(outcome.message or "the workers could not build the pipeline.")
        for what in outcome.random_weights:
            if what not in self.context.random_weights:
                self.context.random_weights.append(what)
        if self.options.distributed:
            for step, seconds in outcome.timings.items():
                self.context.timings[step] = self.context.timings.get(step, 0.0) + seconds
        if outcome.status == DONE:
            self.metrics[case_id] = outcome.metrics or {}
            self.records[case_id] = outcome.record or {}
            self.outputs[case_id] = outcome.outputs or {}
            note = " (already written by an earlier attempt)" if outcome.duplicate else ""
            self.manifest.set(
                case_id,
                DONE,
                "finished" + note,
                seconds=round(outcome.seconds, 3),
                worker=outcome.worker,
            )
            n = len(self.manifest.ids(DONE))
            if self.options.distributed or self.job.resolved.pipeline.kind != "registration":
                progress.log(f"[bold]{case_id}[/bold] ({n}/{total}): {_describe(outcome)}")
        else:
            self.failed[case_id] = outcome.message or "failed"
            extra = {"traceback": outcome.traceback} if outcome.traceback else {}
            self.manifest.set(
                case_id,
                FAILED,
                self.failed[case_id],
                title=outcome.title,
                worker=outcome.worker,
                **extra,
            )
            progress.warn(f"case {case_id} failed: {self.failed[case_id]}")
        self.manifest.write()

    # ----------------------------------------------------------------------- the summary
    def _write_summary(self) -> dict[str, Any]:
        from medfeat.io.atomic import atomic_write_json
        from medfeat.provenance import base_record

        pipeline = self.job.resolved.pipeline
        order = [r.id for r in self.cases.refs]
        summary: dict[str, Any] = {}
        if pipeline.kind == "segmentation":
            from medfeat.pipelines.segmentation import mean_dice

            summary["mode"] = "infer"
        summary["cases"] = {c: self.metrics[c] for c in order if c in self.metrics}
        if pipeline.kind == "segmentation":
            summary |= mean_dice(summary["cases"])
        if self.failed:
            summary["failed"] = dict(self.failed)
        pending = self.manifest.ids(PENDING)
        if pending:
            summary["pending"] = pending
        ctx = self.context
        record = base_record(
            self.job.resolved.to_dict(), ctx.seed, ctx.device, self.registry.plugins, self.out_dir
        )
        record["overrides"] = self.job.resolved.overrides
        record["world_size"] = 1
        record["cohort"] = {
            "executor": self.executor_name,
            "resume": self.options.resume,
            "fingerprint": self.job.fingerprint,
            "counts": self.manifest.counts(),
            "manifest": MANIFEST,
        }
        record["cases"] = {c: self.records[c] for c in order if c in self.records}
        record["case_outputs"] = {c: self.outputs[c] for c in order if c in self.outputs}
        record["timings_s"] = {k: round(v, 4) for k, v in ctx.timings.items()}
        if ctx.random_weights:  # such output is a speed/plumbing check, never a result
            note = {"random_weights": list(ctx.random_weights), "is_result": False}
            summary, record = {**note, **summary}, {**note, **record}
        atomic_write_json(self.out_dir / "metrics.json", summary)
        atomic_write_json(self.out_dir / "provenance.json", record)
        self.manifest.write()
        return summary

    def _conclude(self, summary: dict[str, Any], stopped: str | None) -> dict[str, Any]:
        counts = self.manifest.counts()
        where = f"{self.out_dir / 'metrics.json'} and {self.out_dir / MANIFEST}"
        if stopped:
            raise Interrupted(
                f"{stopped}: stopped after {counts[DONE]} of {len(self.cases.refs)} case(s) "
                f"finished ({counts[FAILED]} failed, {counts[PENDING]} not finished); the summary "
                f"of what finished is in {where}, and no temporary files were left.",
                remedy="Run the same command with --resume to finish the other cases.",
            )
        if self.failed:
            first, message = next(iter(self.failed.items()))
            title = self.manifest.cases[first].get("title") or "Error"
            recorded = f"Each failure is recorded in {where}." if counts[DONE] else ""
            if len(self.cases.refs) == 1:  # one case: its own error, as a plain run reports it
                error = CasesFailed(f"{message} (case {first})", summary=summary)
                error.title = title
                raise error
            rest = "the other cases finished" if counts[DONE] else "no case finished"
            raise CasesFailed(
                f"{len(self.failed)} of {len(self.cases.refs)} case(s) failed (first: {first}: "
                f"{title}: {message}); {rest}. {recorded}",
                summary=summary,
                remedy="Fix those cases' inputs, then rerun with --resume to run only them.",
            )
        return summary


def _describe(outcome: CaseOutcome) -> str:
    m = outcome.metrics or {}
    msg = f"{outcome.seconds:.1f} s"
    if isinstance(m.get("tre_mm_after"), dict) and isinstance(m.get("tre_mm_before"), dict):
        msg += f", TRE {m['tre_mm_before']['mean']:.2f} -> {m['tre_mm_after']['mean']:.2f} mm"
    if isinstance(m.get("sdlogj"), float):
        msg += f", SDlogJ {m['sdlogj']:.3f}"
    if isinstance(m.get("folding_pct"), float):
        msg += f", folding {m['folding_pct']:.3f} %"
    if isinstance(m.get("mean_dice"), float):
        msg += f", mean Dice {m['mean_dice']:.3f}"
    return msg
