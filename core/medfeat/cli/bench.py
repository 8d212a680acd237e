"""``medfeat bench``: run a pipeline on every case of a dataset and tabulate accuracy, time and memory.

Every case runs even when some fail; failures are listed in ``results.json`` and ``results.md``
with their messages, and the command then exits non-zero.
"""

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
    from medfeat.cli.run import add_cohort_args

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
    add_cohort_args(p)
    p.set_defaults(func=cmd_bench)


def data_section(dataset: str, root: Path, cases: str | None) -> dict[str, Any]:
    """The pipeline's ``data`` section for ``--dataset/--root/--cases``, built as data: a name
    or path is never parsed as YAML, so quotes, brackets or commas in it change nothing else."""
    section: dict[str, Any] = {"name": dataset, "root": str(root)}
    if cases is not None:
        section["cases"] = [c.strip() for c in cases.split(",") if c.strip()]
    return section


def resolve_bench_pipeline(args: argparse.Namespace):
    """The pipeline file with its ``data`` section replaced by the command line's (its paths
    relative to the working directory), then the overrides applied."""
    from medfeat.cli.main import console
    from medfeat.config.resolve import resolve_pipeline
    from medfeat.config.source import load_yaml
    from medfeat.plugins import get_registry

    registry = get_registry()
    source = load_yaml(args.pipeline)
    if isinstance(source.data, dict):
        source.data["data"] = data_section(args.dataset, args.root, args.cases)
        for known in [k for k in source.lines if k[:1] == ("data",)]:
            del source.lines[known]
        source.lines[("data",)] = 0  # 0 = from the command line (relative to the working folder)
    extra = [f"device={args.device}"] if args.device else []
    resolved = resolve_pipeline(source, registry, [*args.overrides, *extra])
    if args.print_config:
        import yaml

        console().print(yaml.safe_dump(resolved.to_dict(), sort_keys=False), end="")
    return resolved, registry


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


def markdown_table(rows: dict[str, dict[str, Any]], failed: dict[str, str] | None = None) -> str:
    def fmt(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| case | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for case, row in rows.items():
        lines.append(f"| {case} | " + " | ".join(fmt(row[c]) for c in COLUMNS) + " |")
    means = {c: _mean([r[c] for r in rows.values()]) for c in COLUMNS}
    lines.append("| **mean** | " + " | ".join(fmt(means[c]) for c in COLUMNS) + " |")
    if failed:
        lines += ["", f"**{len(failed)} case(s) failed** (not in the table or the means):", ""]
        lines += [f"- `{case}`: {_one_line(msg)}" for case, msg in failed.items()]
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _mean(values: list[Any]) -> float | None:
    vals = [v for v in values if isinstance(v, int | float)]
    return sum(vals) / len(vals) if vals else None


def cmd_bench(args: argparse.Namespace) -> int:
    from rich.markdown import Markdown

    from medfeat.cli.main import console
    from medfeat.cli.run import cohort_options
    from medfeat.cohort import CasesFailed
    from medfeat.context import RunContext, process_rank, resolve_device, seed_everything
    from medfeat.io.atomic import atomic_write_json, atomic_write_text
    from medfeat.pipelines import run_pipeline
    from medfeat.progress import Progress

    resolved, registry = resolve_bench_pipeline(args)
    pipeline = resolved.pipeline
    seed_everything(pipeline.seed)
    progress = Progress(verbosity=args.verbose - args.quiet)
    context = RunContext(
        device=resolve_device(pipeline.device), seed=pipeline.seed, progress=progress
    )
    failure: CasesFailed | None = None
    try:
        summary = run_pipeline(resolved, registry, context, args.out, cohort_options(args))
    except CasesFailed as exc:
        failure, summary = exc, exc.summary
    if process_rank()[0] > 0:
        return 0  # under torchrun, rank 0 runs the benchmark and writes its table
    rows = {case: case_row(m) for case, m in summary.get("cases", {}).items()}
    failed = dict(summary.get("failed", {}))
    random = list(context.random_weights)
    results: dict[str, Any] = {
        "pipeline": str(args.pipeline),
        "dataset": args.dataset,
        "cases": rows,
        "failed": failed,
    }
    if random:
        results = {"random_weights": random, "is_result": False, **results}
    atomic_write_json(args.out / "results.json", results)
    table = markdown_table(rows, failed)
    if random:
        table = (
            f"**RANDOM WEIGHTS ({'; '.join(random)}): speed and plumbing only, NOT a result.**"
            f"\n\n{table}"
        )
    atomic_write_text(args.out / "results.md", table)
    console().print(Markdown(table))
    if failure is not None:
        raise failure
    return 0
