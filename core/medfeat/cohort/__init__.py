"""Cohorts: run a pipeline case by case, each case a task, resumable and fault-isolated.

Cases run in-process by default, on a local Dask cluster with ``--workers N``, on an existing
Dask scheduler with ``--scheduler ADDRESS``, or on batch-system workers (SLURM, PBS, SGE, LSF)
through dask-jobqueue with ``--cluster FILE.yaml``. See ``docs/cohorts.md``.
"""

from __future__ import annotations

from medfeat.cohort.options import CasesFailed, CohortOptions

__all__ = ["CasesFailed", "CohortOptions"]
