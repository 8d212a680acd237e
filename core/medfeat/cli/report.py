"""``medfeat report OUT_DIR``: (re)build the HTML QC report of a finished output folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="build the HTML QC report (figures per case, cohort table) of a finished output folder",
    )
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="output folder of a finished run")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from medfeat.progress import Progress
    from medfeat.report import build_report

    progress = Progress(verbosity=args.verbose - args.quiet)
    index = build_report(args.out_dir, progress=progress)
    progress.log(f"Report: {index}")
    return 0
