"""Visual QC reports of finished output folders (``medfeat report OUT_DIR``; runs write one too).

``build_report(out_dir)`` writes ``out_dir/report/index.html`` (one row per case, distributions,
failures, provenance) and a page per case with PNG figures made by matplotlib; the folder opens
offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["build_report"]


def build_report(out_dir: str | Path, progress: Any = None) -> Path:
    """Write the report of a finished output folder; returns ``out_dir/report/index.html``."""
    from medfeat.report.build import build_report as _build

    return _build(out_dir, progress)
