"""Where a cohort's cases run: in this process, or as Dask tasks (a local cluster of worker
processes, an existing scheduler, or batch jobs through dask-jobqueue)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medfeat.cohort.cases import CaseRef
from medfeat.cohort.options import CohortOptions
from medfeat.cohort.worker import CaseOutcome, Job, Session, run_case
from medfeat.errors import ConfigError, ResourceError

Task = tuple[CaseRef, Any]


class InProcess:
    """Cases one after another in this process, with the session built here."""

    description = "in-process"

    def __init__(self, session: Session | None) -> None:
        self.session = session

    def run(self, job: Job, tasks: Iterator[Task], indexed: bool) -> Iterator[CaseOutcome]:
        for ref, case in tasks:
            yield run_case(job, ref, case, session=self.session)

    def close(self) -> None:
        pass


class JobqueueConfig(BaseModel):
    """A batch-system cluster for ``--cluster FILE.yaml`` (one Dask worker per job by default)."""

    model_config = ConfigDict(extra="forbid")
    jobqueue: Literal["slurm", "pbs", "sge", "lsf"] = Field(
        "slurm", description="Batch system of the cluster."
    )
    jobs: int = Field(1, ge=1, description="Number of batch jobs (each runs `processes` workers).")
    queue: str | None = Field(None, description="Queue / SLURM partition.")
    account: str | None = Field(None, description="Account / project charged.")
    cores: int = Field(4, ge=1, description="CPU cores per job.")
    memory: str = Field("16GB", description="Memory per job, e.g. '64GB'.")
    gpus: int = Field(0, ge=0, description="GPUs per job (one worker per GPU: set processes).")
    walltime: str = Field("01:00:00", description="Wall time per job, HH:MM:SS.")
    processes: int = Field(1, ge=1, description="Dask worker processes per job.")
    job_extra_directives: list[str] = Field(
        default_factory=list, description="Extra scheduler lines, e.g. '--constraint=a100'."
    )
    job_script_prologue: list[str] = Field(
        default_factory=list,
        description="Shell lines run before the worker, e.g. 'source ~/venvs/medfeat/bin/activate'.",
    )
    interface: str | None = Field(None, description="Network interface, e.g. 'ib0'.")
    local_directory: str | None = Field(None, description="Node-local scratch folder.")
    log_directory: str | None = Field(None, description="Folder of the jobs' log files.")
    python: str | None = Field(None, description="Python executable on the nodes.")


def load_jobqueue_config(path: Path) -> JobqueueConfig:
    """Read and validate a ``--cluster`` YAML file."""
    from medfeat.config.source import load_yaml

    source = load_yaml(path)
    try:
        return JobqueueConfig.model_validate(source.data or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            f"{err['msg']}.",
            source=str(path),
            line=source.line_of(tuple(err["loc"])),
            key_path=key or None,
            remedy="The options are listed in docs/cohorts.md (jobqueue, jobs, queue, account, "
            "cores, memory, gpus, walltime, processes, ...).",
        ) from None


def jobqueue_cluster(config: JobqueueConfig) -> Any:
    """A dask-jobqueue cluster for ``config`` (no job is submitted until it is scaled)."""
    import dask_jobqueue

    classes = {
        "slurm": dask_jobqueue.SLURMCluster,
        "pbs": dask_jobqueue.PBSCluster,
        "sge": dask_jobqueue.SGECluster,
        "lsf": dask_jobqueue.LSFCluster,
    }
    extra = list(config.job_extra_directives)
    if config.gpus:
        extra += {
            "slurm": [f"--gres=gpu:{config.gpus}"],
            "pbs": [f"-l ngpus={config.gpus}"],
            "sge": [f"-l gpu={config.gpus}"],
            "lsf": [f'-gpu "num={config.gpus}"'],
        }[config.jobqueue]
    kwargs: dict[str, Any] = {
        "cores": config.cores,
        "memory": config.memory,
        "processes": config.processes,
        "walltime": config.walltime,
        "job_extra_directives": extra,
        "job_script_prologue": [
            *config.job_script_prologue,
            f"export OMP_NUM_THREADS={max(1, config.cores // config.processes)}",
        ],
    }
    options = ("queue", "account", "interface", "local_directory", "log_directory", "python")
    kwargs |= {k: getattr(config, k) for k in options if getattr(config, k) is not None}
    if config.jobqueue == "sge" and "account" in kwargs:
        kwargs["project"] = kwargs.pop("account")
    if config.jobqueue == "lsf" and "account" in kwargs:
        kwargs["project"] = kwargs.pop("account")
    return classes[config.jobqueue](**kwargs)


class OnDask:
    """Cases as Dask tasks. A worker that dies mid-case has its case rerun elsewhere by the
    scheduler (up to ``distributed.scheduler.allowed-failures`` times, then it is recorded as
    failed)."""

    def __init__(self, options: CohortOptions) -> None:
        from distributed import Client, LocalCluster

        self.cluster: Any = None
        try:
            if options.workers is not None:
                threads = max(1, (os.cpu_count() or 1) // options.workers)
                env = {k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
                self.cluster = LocalCluster(
                    n_workers=options.workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    silence_logs=logging.CRITICAL,
                    env=env,
                )
                self.description = f"local Dask cluster, {options.workers} worker process(es)"
            elif options.scheduler is not None:
                self.description = f"Dask scheduler {options.scheduler}"
            else:
                config = load_jobqueue_config(Path(options.cluster))
                self.cluster = jobqueue_cluster(config)
                self.cluster.scale(jobs=config.jobs)
                self.description = f"{config.jobqueue} cluster, {config.jobs} job(s) x {config.processes} worker(s)"
            target = self.cluster if self.cluster is not None else options.scheduler
            self.client = Client(target, timeout="30s")
        except (OSError, TimeoutError) as exc:
            self.close()
            raise ResourceError(
                f"Could not reach the Dask cluster ({type(exc).__name__}: {exc}).",
                remedy="Check the --scheduler address (tcp://HOST:PORT) and that the scheduler "
                "runs, or run without --scheduler/--cluster.",
            ) from None

    def _workers(self) -> int:
        try:
            return max(1, len(self.client.scheduler_info()["workers"]))
        except Exception:
            return 1

    def run(self, job: Job, tasks: Iterator[Task], indexed: bool) -> Iterator[CaseOutcome]:
        """Submit the tasks (all of them when workers load their own cases; otherwise a few per
        worker, since each carries its loaded images) and yield outcomes as cases finish."""
        from distributed import as_completed

        limit = 10**9 if indexed else 2 * self._workers()
        pending: dict[str, CaseRef] = {}
        done = as_completed()
        tasks = iter(tasks)

        def submit() -> bool:
            try:
                ref, case = next(tasks)
            except StopIteration:
                return False
            future = self.client.submit(
                run_case, job, ref, case, key=f"medfeat-{job.run_id}-{ref.id}", pure=False
            )
            pending[future.key] = ref
            done.add(future)
            return True

        while len(pending) < limit and submit():
            pass
        for future in done:
            ref = pending.pop(future.key)
            try:
                outcome = future.result()
            except Exception as exc:
                outcome = _lost(ref, exc)
            future.release()
            yield outcome
            while len(pending) < limit and submit():
                pass

    def close(self) -> None:
        for part in ("client", "cluster"):
            thing = getattr(self, part, None)
            if thing is not None:
                with contextlib.suppress(Exception):  # a cluster going away anyway
                    thing.close()
                setattr(self, part, None)


def _lost(ref: CaseRef, exc: BaseException) -> CaseOutcome:
    from distributed.scheduler import KilledWorker

    if isinstance(exc, KilledWorker):
        message = (
            "the worker processes running it died repeatedly (out of memory, or killed); it was "
            "retried on other workers each time."
        )
    else:
        message = f"the task was lost: {type(exc).__name__}: {exc}"
    return CaseOutcome(ref.id, "failed", message=message, title="Worker error")
