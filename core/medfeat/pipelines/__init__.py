"""Pipeline runners, one per pipeline kind."""

from __future__ import annotations

from medfeat.pipelines.runner import run_pipeline

__all__ = ["run_pipeline"]
