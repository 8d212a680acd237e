"""Run every available peer registration tool on the lung 4D-CT landmark pairs.

Usage (from the repository root)::

    python -m benchmarks.peers.run_peers [--cases case_002 case_003] [--tools greedy elastix]
        [--threads 2] [--workdir DIR] [--json results.json]

(``python benchmarks/peers/run_peers.py ...`` works too.) For each tool and case, the fixed
(T00) landmarks are mapped into the moving (T50) image and compared with the moving landmarks;
the table lists per-case TRE mean / 95th percentile in mm and the tool's wall time, then the mean
over cases. Tools that are not installed are listed with the reason and skipped. Exits with
status 2 when the data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # executed as a script: make ``benchmarks.peers`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.peers import PEERS, get_peer  # noqa: E402
from benchmarks.peers.common import PeerFailedError  # noqa: E402
from benchmarks.peers.data import DEFAULT_CASES, default_data_root, load_case, tre  # noqa: E402


@dataclass
class Row:
    """One table row: a tool on one case (or the mean over cases)."""

    tool: str
    version: str
    case: str
    tre_mean: float
    tre_p95: float
    seconds: float
    note: str = ""


def _fmt(x: float, nd: int = 2) -> str:
    return "-" if math.isnan(x) else f"{x:.{nd}f}"


def format_table(rows: list[Row]) -> str:
    """Render rows as a fixed-width text table."""
    header = ("tool", "version", "case", "TRE mean", "TRE p95", "seconds", "note")
    body = [
        (
            r.tool,
            r.version,
            r.case,
            _fmt(r.tre_mean),
            _fmt(r.tre_p95),
            _fmt(r.seconds, 1),
            r.note,
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths[:-1]))
    for r_cells, r in zip(body, rows, strict=True):
        line = "  ".join(str(c).ljust(w) for c, w in zip(r_cells, widths, strict=True)).rstrip()
        if r.case == "mean":
            line += "\n"
        lines.append(line)
    return "\n".join(lines).rstrip()


def _mean_row(tool: str, version: str, rows: list[Row]) -> Row:
    ok = [r for r in rows if not math.isnan(r.tre_mean)]
    if not ok:
        return Row(tool, version, "mean", math.nan, math.nan, math.nan, "no successful case")
    note = "" if len(ok) == len(rows) else f"over {len(ok)}/{len(rows)} cases"
    return Row(
        tool,
        version,
        "mean",
        float(np.mean([r.tre_mean for r in ok])),
        float(np.mean([r.tre_p95 for r in ok])),
        float(np.mean([r.seconds for r in ok])),
        note,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), help="lung4dct case names")
    p.add_argument("--tools", nargs="+", default=list(PEERS), choices=list(PEERS))
    p.add_argument("--threads", type=int, default=2, help="threads per tool (default 2)")
    p.add_argument("--data-root", type=Path, default=None, help="shared data folder")
    p.add_argument("--workdir", type=Path, default=None, help="keep tool outputs here")
    p.add_argument("--json", type=Path, default=None, help="also write rows as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; return the process exit status."""
    args = parse_args(argv)
    data_root = args.data_root or default_data_root()
    if not (data_root / "lung4dct").is_dir():
        print(f"SKIP: lung4dct data not found under {data_root}", file=sys.stderr)
        return 2
    cases = [load_case(name, data_root) for name in args.cases]

    rows: list[Row] = []
    init = [
        Row("initial", "-", c.name, *tre(c.fixed_points, c.moving_points), math.nan) for c in cases
    ]
    rows += init + [_mean_row("initial", "-", init)]
    skipped: list[str] = []

    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="medfeat_peers_")
        workroot = Path(tmp.name)
    else:
        workroot = args.workdir
    try:
        for name in args.tools:
            tool = get_peer(name)
            reason = tool.unavailable_reason()
            if reason is not None:
                skipped.append(f"{name}: {reason}")
                continue
            ver = tool.version()
            tool_rows: list[Row] = []
            for case in cases:
                print(f"[run_peers] {name} on {case.name} ...", file=sys.stderr, flush=True)
                try:
                    res = tool.register_and_map(
                        case.fixed_path,
                        case.moving_path,
                        case.fixed_points,
                        workroot / name / case.name,
                        threads=args.threads,
                    )
                except (PeerFailedError, RuntimeError, OSError, ValueError) as exc:
                    traceback.print_exc(file=sys.stderr)
                    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    tool_rows.append(
                        Row(name, ver, case.name, math.nan, math.nan, math.nan, f"FAILED: {first}")
                    )
                    continue
                m, p95 = tre(res.points_world_lps, case.moving_points)
                tool_rows.append(Row(name, res.version, case.name, m, p95, res.seconds))
                print(
                    f"[run_peers] {name} {case.name}: TRE {m:.2f} mm, {res.seconds:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
            rows += tool_rows + [_mean_row(name, ver, tool_rows)]
    finally:
        if tmp is not None:
            tmp.cleanup()

    print(f"threads={args.threads}  cases={' '.join(args.cases)}  (TRE in mm, time in s)")
    print(format_table(rows))
    for line in skipped:
        print(f"skipped {line}")
    if args.json is not None:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
