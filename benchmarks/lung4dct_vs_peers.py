"""Benchmark: medfeat pipelines and external registration tools on the same lung 4D-CT cases, in one run.

    python benchmarks/lung4dct_vs_peers.py --root ../shared/data/lung4dct --out out/bench-peers

Runs medfeat's default pipeline (MIND-SSC + ConvexAdam), medfeat's FFD baseline and the MIND
matcher (correspondence on the same landmarks), then every installed peer tool (greedy, elastix,
NiftyReg, ANTs; see benchmarks/peers/README.md), and prints mean TRE (mean of per-case means, mm),
p95, folding and seconds per pair, with TRE and time as ratios to medfeat's default.
Fixed = T00 (end-inhale), moving = T50; landmarks of T00 are mapped into T50.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PIPELINES = {
    "medfeat default (MIND + ConvexAdam)": REPO / "examples" / "lung4dct-mind-convex-adam.yaml",
    "medfeat FFD baseline (SimpleITK)": REPO / "examples" / "lung4dct-sitk-ffd.yaml",
    "medfeat MIND matcher (correspondence)": REPO / "examples" / "lung4dct-mind-matcher.yaml",
}


def run_medfeat(
    pipeline: Path, root: Path, cases: list[str], out: Path, threads: int
) -> dict[str, dict]:
    import torch

    from medfeat.config.resolve import resolve_pipeline
    from medfeat.config.source import load_yaml
    from medfeat.context import RunContext, seed_everything
    from medfeat.pipelines import run_pipeline
    from medfeat.plugins import get_registry
    from medfeat.progress import Progress

    torch.set_num_threads(threads)
    registry = get_registry()
    overrides = [
        f"data={{name: lung4dct, root: '{root}', cases: [{','.join(cases)}]}}",
        "output.write_warped=false",
    ]
    resolved = resolve_pipeline(load_yaml(pipeline), registry, overrides)
    seed_everything(resolved.pipeline.seed)
    summary = run_pipeline(
        resolved,
        registry,
        RunContext(device="cpu", seed=resolved.pipeline.seed, progress=Progress(False)),
        out,
    )
    rows = {}
    for case, m in summary["cases"].items():
        rows[case] = {
            "tre_mm": m["tre_mm_after"]["mean"],
            "tre_mm_p95": m["tre_mm_after"]["p95"],
            "tre_mm_before": m["tre_mm_before"]["mean"],
            "folding_pct": m.get("folding_pct"),
            "seconds": m["seconds"],
        }
    return rows


def run_peer(
    name: str, root: Path, cases: list[str], out: Path, threads: int
) -> dict[str, dict] | str:
    from benchmarks.peers import get_peer
    from benchmarks.peers.data import load_case, tre

    tool = get_peer(name)
    if not tool.available():
        return tool.unavailable_reason() or "not available"
    rows = {}
    for case_name in cases:
        case = load_case(
            case_name, root.parent
        )  # the peers load landmarks independently of medfeat.io
        res = tool.register_and_map(
            case.fixed_path,
            case.moving_path,
            case.fixed_points,
            out / f"{name}_{case_name}",
            threads=threads,
        )
        mean, p95 = tre(res.points_world_lps, case.moving_points)
        before, _ = tre(case.fixed_points, case.moving_points)
        rows[case_name] = {
            "tre_mm": mean,
            "tre_mm_p95": p95,
            "tre_mm_before": before,
            "folding_pct": None,
            "seconds": res.seconds,
        }
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "lung4dct")
    ap.add_argument("--cases", default="case_002,case_003,case_004,case_005")
    ap.add_argument("--out", type=Path, default=Path("out/bench-peers"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--peers",
        default="greedy,convexadam,elastix,niftyreg,ants",
        help="comma list; empty for none",
    )
    ap.add_argument(
        "--skip",
        default="",
        help="comma list of medfeat method labels' first words to skip, e.g. 'FFD'",
    )
    args = ap.parse_args()
    if not args.root.is_dir():
        print(f"lung4dct data not found at {args.root}; pass --root.", file=sys.stderr)
        return 2
    cases = [c for c in args.cases.split(",") if c]
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results: dict[str, dict | str] = {}
    for label, pipeline in PIPELINES.items():
        if any(s and s in label for s in args.skip.split(",")):
            continue
        print(f"running {label} ...", file=sys.stderr, flush=True)
        results[label] = run_medfeat(
            pipeline, args.root, cases, args.out / f"{stamp}-{pipeline.stem}", args.threads
        )
    for name in [p for p in args.peers.split(",") if p]:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            results[name] = run_peer(
                name, args.root, cases, args.out / f"{stamp}-peers", args.threads
            )
        except Exception as exc:  # a peer failing must not lose the other results
            results[name] = f"failed: {exc}"
    (args.out / f"{stamp}-results.json").write_text(json.dumps(results, indent=2))
    print(table(results, cases))
    return 0


def table(results: dict[str, dict | str], cases: list[str]) -> str:
    ref_label = next(iter(results))
    ref = results[ref_label]

    def mean(rows: dict, key: str) -> float:
        vals = [rows[c][key] for c in cases if rows[c][key] is not None]
        return float(np.mean(vals)) if vals else float("nan")

    head = (
        "| method | "
        + " | ".join(f"{c} TRE" for c in cases)
        + " | mean TRE mm | mean p95 mm | folding % | s/pair | TRE ratio | time ratio |"
    )
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    before = (
        " | ".join(f"{ref[c]['tre_mm_before']:.2f}" for c in cases) if isinstance(ref, dict) else ""
    )
    lines.append(
        f"| initial | {before} | {mean(ref, 'tre_mm_before'):.2f} | | | | | |"
        if isinstance(ref, dict)
        else ""
    )
    for label, rows in results.items():
        if isinstance(rows, str):
            lines.append(
                f"| {label} | " + " | ".join("-" for _ in cases) + f" | not run: {rows} | | | | | |"
            )
            continue
        per_case = " | ".join(f"{rows[c]['tre_mm']:.2f}" for c in cases)
        fold = mean(rows, "folding_pct")
        t_ratio = (
            mean(rows, "seconds") / mean(ref, "seconds") if isinstance(ref, dict) else float("nan")
        )
        r_ratio = (
            mean(rows, "tre_mm") / mean(ref, "tre_mm") if isinstance(ref, dict) else float("nan")
        )
        lines.append(
            f"| {label} | {per_case} | {mean(rows, 'tre_mm'):.2f} | {mean(rows, 'tre_mm_p95'):.2f} | "
            f"{'-' if np.isnan(fold) else f'{fold:.3f}'} | {mean(rows, 'seconds'):.1f} | {r_ratio:.2f} | {t_ratio:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
