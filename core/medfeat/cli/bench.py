"""``medfeat bench``: run a pipeline on every case of a dataset and tabulate accuracy, time and memory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

COLUMNS = (
    "tre_mm_before",
    "tre_mm_after",
    "tre_mm_p95",
    "sdlogj",
    "folding_pct",
    "seconds",
    "peak_rss_mb",
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bench", help="run a pipeline on every case of a dataset; write results.json and a table"
    )
    p.add_argument("pipeline", type=Path)
    p.add_argument("overrides", nargs="*", metavar="key.path=value")
    p.add_argument("--dataset", required=True, help="registered dataset name, e.g. lung4dct")
    p.add_argument("--root", type=Path, required=True, help="dataset folder")
    p.add_argument("--cases", help="comma-separated case names (default: all)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device")
    p.add_argument("--print-config", action="store_true")
    p.set_defaults(func=cmd_bench)


def case_row(metrics: dict[str, Any]) -> dict[str, Any]:
    """The benchmark columns of one case's metrics."""
    return {
        "tre_mm_before": metrics.get("tre_mm_before", {}).get("mean"),
        "tre_mm_after": metrics.get("tre_mm_after", {}).get("mean"),
        "tre_mm_p95": metrics.get("tre_mm_after", {}).get("p95"),
        "sdlogj": metrics.get("sdlogj"),
        "folding_pct": metrics.get("folding_pct"),
        "seconds": metrics.get("seconds"),
        "peak_rss_mb": metrics.get("peak_rss_mb"),
    }


def markdown_table(rows: dict[str, dict[str, Any]]) -> str:
    def fmt(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| case | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for case, row in rows.items():
        lines.append(f"| {case} | " + " | ".join(fmt(row[c]) for c in COLUMNS) + " |")
    means = {c: _mean([r[c] for r in rows.values()]) for c in COLUMNS}
    lines.append("| **mean** | " + " | ".join(fmt(means[c]) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def _mean(values: list[Any]) -> float | None:
    vals = [v for v in values if isinstance(v, int | float)]
    return sum(vals) / len(vals) if vals else None


def cmd_bench(args: argparse.Namespace) -> int:
    from rich.markdown import Markdown

    from medfeat.cli.main import console, resolve_cli_pipeline
    from medfeat.context import RunContext, resolve_device, seed_everything
    from medfeat.io.atomic import atomic_write_json, atomic_write_text
    from medfeat.pipelines import run_pipeline
    from medfeat.progress import Progress

    data = f"data={{name: {args.dataset}, root: '{args.root}'"
    data += f", cases: [{args.cases}]}}" if args.cases else "}"
    extra = [data] + ([f"device={args.device}"] if args.device else [])
    resolved, registry = resolve_cli_pipeline(args, extra)
    pipeline = resolved.pipeline
    seed_everything(pipeline.seed)
    progress = Progress(verbosity=args.verbose - args.quiet)
    context = RunContext(
        device=resolve_device(pipeline.device), seed=pipeline.seed, progress=progress
    )
    summary = run_pipeline(resolved, registry, context, args.out)
    from medfeat.context import process_rank

    if process_rank()[0] > 0:
        return 0  # under torchrun, rank 0 runs the benchmark and writes its table
    rows = {case: case_row(m) for case, m in summary["cases"].items()}
    random = list(context.random_weights)
    results = {"pipeline": str(args.pipeline), "dataset": args.dataset, "cases": rows}
    if random:
        results = {"random_weights": random, "is_result": False, **results}
    atomic_write_json(args.out / "results.json", results)
    table = markdown_table(rows)
    if random:
        table = (
            f"**RANDOM WEIGHTS ({'; '.join(random)}): speed and plumbing only, NOT a result.**"
            f"\n\n{table}"
        )
    atomic_write_text(args.out / "results.md", table)
    console().print(Markdown(table))
    return 0
