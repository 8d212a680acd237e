"""Full-size MedDIFT speed/memory benchmark with RANDOM weights (never an accuracy result).

Stages (each in its own process, so peak RSS is per stage):

* ``lung4dct``: one DIR-Lab pair of ../shared/data/lung4dct (160x128x160 at 2 mm, stretched to
  128^3): feature extraction of both phases with the v1-size networks, then matching of all 375
  T00 landmarks into T50 (global search over every voxel of T50, and over the finest level).
* ``synthetic``: a synthetic CT pair of ``--size``^3 (256^3 -> latent 64^3), 375 random queries.

    python plugins/maisi-dift/benchmarks/bench_full_size.py --out out/meddift-bench --max-minutes 40

Writes ``results.json`` and ``results.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
DEFAULT_ROOT = HERE.parents[3] / ".." / "shared" / "data" / "lung4dct"


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _backbone(device: str, intensity: str, splits: int):
    from medfeat_maisi_dift.backbone import make_maisi_dift
    from medfeat_maisi_dift.config import MaisiDiftConfig

    from medfeat.api import RunContext

    cfg = MaisiDiftConfig(random_weights=True, intensity=intensity, autoencoder_num_splits=splits)
    return make_maisi_dift(cfg, RunContext(device=device, seed=0))  # warns: random weights


def _match(fa, fb, queries, candidates: str, box_mm: float | None = None) -> float:
    from medfeat_maisi_dift.config import MedDiftMatcherConfig
    from medfeat_maisi_dift.matcher import MedDiftMatcher

    cfg = MedDiftMatcherConfig(candidates=candidates, box_half_size_mm=box_mm)
    start = time.perf_counter()
    MedDiftMatcher(cfg).match(fa, fb, queries)
    return time.perf_counter() - start


def _report(out: dict) -> None:
    """Print the results so far (the parent keeps the last line, even at its time bound)."""
    out["peak_rss_gib"] = _peak_rss_gib()
    print(json.dumps(out), flush=True)


def _matching(out: dict, fa, fb, queries, args) -> None:
    out["num_queries"] = len(queries)
    out["match_finest-level_s"] = _match(fa, fb, queries, "finest-level")
    _report(out)
    out["match_image_box20_s"] = _match(fa, fb, queries, "image", 20.0)
    _report(out)
    if args.global_image_candidates:
        out["match_image_s"] = _match(fa, fb, queries, "image")
        _report(out)


def stage_lung4dct(args) -> dict:
    from medfeat.builtins.datasets import Lung4DCTConfig, Lung4DCTDataset

    case = next(
        Lung4DCTDataset(Lung4DCTConfig(root=args.root, cases=[args.case])).registration_cases()
    )
    t0 = time.perf_counter()
    bb = _backbone(args.device, "unit", args.splits)  # the lung4dct volumes are already in [0, 1]
    out = {"build_s": time.perf_counter() - t0, "image_shape": list(case.fixed.grid.shape)}
    t0 = time.perf_counter()
    fa = bb.extract(case.fixed)
    out["extract_fixed_s"] = time.perf_counter() - t0
    _report(out)
    t0 = time.perf_counter()
    fb = bb.extract(case.moving)
    out["extract_moving_s"] = time.perf_counter() - t0
    out["level_shapes"] = [list(lv.data.shape) for lv in fa.levels]
    _report(out)
    _matching(out, fa, fb, case.fixed_points, args)
    return out


def stage_synthetic(args) -> dict:
    import numpy as np
    import torch

    from medfeat.geometry import Grid, Image, PointSet

    n = args.size
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn((1, 1, n // 8, n // 8, n // 8), generator=gen)
    vol = torch.nn.functional.interpolate(noise, size=(n, n, n), mode="trilinear")[0, 0]
    vol = (vol * 600.0 - 300.0).numpy().astype(np.float32)  # smooth HU-like texture
    grid = Grid.from_shape((n, n, n), 1.0)
    a = Image(vol, grid, {"name": "synthetic-a"})
    b = Image(np.roll(vol, 3, axis=0), grid, {"name": "synthetic-b"})
    del vol
    pts = grid.array_index_to_world(np.random.default_rng(0).uniform(20, n - 20, (375, 3)))
    t0 = time.perf_counter()
    bb = _backbone(args.device, "hu", args.splits)
    out = {"build_s": time.perf_counter() - t0, "image_shape": [n, n, n]}
    t0 = time.perf_counter()
    fa = bb.extract(a)
    out["extract_fixed_s"] = time.perf_counter() - t0
    _report(out)
    t0 = time.perf_counter()
    fb = bb.extract(b)
    out["extract_moving_s"] = time.perf_counter() - t0
    out["level_shapes"] = [list(lv.data.shape) for lv in fa.levels]
    _report(out)
    _matching(out, fa, fb, PointSet(pts), args)
    return out


def markdown(results: dict) -> str:
    rows = [
        "| stage | image (k,j,i) | extract A s | extract B s | match, finest-level s "
        "| match, image voxels in 20 mm box s | match, all image voxels s | peak RSS GiB | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def f(v):
        return f"{v:.1f}" if isinstance(v, float) else str(v)

    for name, r in results["stages"].items():
        if "image_shape" not in r:
            rows.append(f"| {name} | | | | | | | | {r.get('error', r.get('note', ''))} |")
            continue
        rows.append(
            f"| {name} | {'x'.join(map(str, r['image_shape']))} | {f(r.get('extract_fixed_s', '-'))} "
            f"| {f(r.get('extract_moving_s', '-'))} | {f(r.get('match_finest-level_s', '-'))} "
            f"| {f(r.get('match_image_box20_s', '-'))} | {f(r.get('match_image_s', '-'))} "
            f"| {f(r.get('peak_rss_gib'))} | {r.get('note', '')} |"
        )
    return "\n".join(rows) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT.resolve())
    p.add_argument("--case", default="case_002")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--splits", type=int, default=4, help="autoencoder_num_splits")
    p.add_argument("--stages", nargs="+", default=["lung4dct", "synthetic"])
    p.add_argument(
        "--global-image-candidates",
        action="store_true",
        help="also time the global search over every image voxel of B (375 x all voxels)",
    )
    p.add_argument("--max-minutes", type=float, default=40.0, help="bound on the whole run")
    p.add_argument("--stage", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.stage:
        {"lung4dct": stage_lung4dct, "synthetic": stage_synthetic}[args.stage](args)
        return 0

    import torch

    results = {
        "weights": "RANDOM (speed and memory only; not an accuracy result)",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}",
        "device": args.device,
        "stages": {},
    }
    deadline = time.monotonic() + 60 * args.max_minutes
    for stage in args.stages:
        left = deadline - time.monotonic()
        if left <= 0:
            results["stages"][stage] = {"error": "skipped (time bound)"}
            continue
        cmd = [sys.executable, str(HERE), "--stage", stage, *sys.argv[1:]]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=left)
            stdout, note = proc.stdout, None
            if proc.returncode != 0:
                tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
                note = f"failed: {tail[0][:200]}"
        except subprocess.TimeoutExpired as exc:
            stdout, note = exc.stdout or "", "stopped at the time bound"
            stdout = stdout.decode() if isinstance(stdout, bytes) else stdout
        lines = [ln for ln in stdout.strip().splitlines() if ln.startswith("{")]
        results["stages"][stage] = json.loads(lines[-1]) if lines else {}
        if note:
            results["stages"][stage]["note"] = note
        print(stage, results["stages"][stage], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    (args.out / "results.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
