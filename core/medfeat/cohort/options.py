"""How a cohort runs (where its cases execute, whether it resumes) and how it reports failures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medfeat.errors import ConfigError, MedfeatError


@dataclass(frozen=True)
class CohortOptions:
    """``workers``: start a local Dask cluster of that many worker processes; ``scheduler``: the
    address of a running Dask scheduler; ``cluster``: a dask-jobqueue YAML file (batch jobs). At
    most one of them; none runs the cases in this process. ``resume`` skips finished cases."""

    workers: int | None = None
    scheduler: str | None = None
    cluster: Path | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        chosen = [n for n in ("workers", "scheduler", "cluster") if getattr(self, n) is not None]
        if len(chosen) > 1:
            raise ConfigError(
                f"--{chosen[0]} and --{chosen[1]} both say where cases run.",
                source="command line",
                remedy="Give only one of --workers, --scheduler and --cluster.",
            )
        if self.workers is not None and self.workers < 1:
            raise ConfigError(
                f"--workers {self.workers}: at least one worker is needed.",
                source="command line",
                remedy="Give --workers 1 or more (or leave it out to run in this process).",
            )

    @property
    def distributed(self) -> bool:
        return any(v is not None for v in (self.workers, self.scheduler, self.cluster))


class CasesFailed(MedfeatError):
    """Some cases of a cohort failed; the others finished and the summary was written.

    ``summary`` is the run's summary (``metrics.json``), with the failures under ``failed``.
    """

    title = "Cases failed"

    def __init__(self, message: str, *, summary: dict[str, Any], remedy: str | None = None):
        self.summary = summary
        super().__init__(message, remedy=remedy)
