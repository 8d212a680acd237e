"""Full-size MedDIFT speed/memory benchmark with RANDOM weights (never an accuracy result).

Stages (each in its own process, so peak RSS is per stage):

* ``lung4dct``: one DIR-Lab pair of ../shared/data/lung4dct (160x128x160 at 2 mm, stretched to
  128^3): feature extraction of both phases with the v1-size networks, then matching of all 375
  T00 landmarks into T50 (global search over every voxel of T50, and over the finest level).
* ``synthetic``: a synthetic CT pair of ``--size``^3 (256^3 -> latent 64^3), 375 random queries.

Image-voxel matching is timed with the exact native-cell scores and with the old interpolation
of every channel (``--image-search``), in a 20 mm box and (``--global-image-candidates``) over
every voxel of B; with both, the table counts the matches on which they agree.

    python plugins/maisi-dift/benchmarks/bench_full_size.py --out out/meddift-bench --max-minutes 40

Correctness smoke run of the script (tiny networks, seconds; its numbers mean nothing):

    python plugins/maisi-dift/benchmarks/bench_full_size.py --out /tmp/smoke --stages synthetic \
        --size 64 --architecture tiny --global-image-candidates

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


def _backbone(args, intensity: str):
    from medfeat_maisi_dift.backbone import make_maisi_dift
    from medfeat_maisi_dift.config import MaisiDiftConfig

    from medfeat.api import RunContext

    cfg = MaisiDiftConfig(
        random_weights=True,
        intensity=intensity,
        architecture=args.architecture,
        encoder=args.encoder,
        autoencoder_num_splits=args.splits,
        encoder_slab_mib=args.slab_mib,
        encoder_recompute=args.encoder_recompute,
        unet_attention=args.attention,
    )
    return make_maisi_dift(cfg, RunContext(device=args.device, seed=0))  # warns: random weights


def _match(fa, fb, queries, candidates: str, box_mm: float | None = None, scoring=None):
    """(seconds, matched positions) of one matcher configuration."""
    from medfeat_maisi_dift.config import MedDiftMatcherConfig
    from medfeat_maisi_dift.matcher import MedDiftMatcher

    extra = {"image_scoring": scoring} if scoring else {}
    cfg = MedDiftMatcherConfig(candidates=candidates, box_half_size_mm=box_mm, **extra)
    start = time.perf_counter()
    m = MedDiftMatcher(cfg).match(fa, fb, queries)
    return time.perf_counter() - start, m.points.points


def _report(out: dict) -> None:
    """Print the results so far (the parent keeps the last line, even at its time bound)."""
    out["peak_rss_gib"] = _peak_rss_gib()
    print(json.dumps(out), flush=True)


def _matching(out: dict, fa, fb, queries, args) -> None:
    """Time the searches; with ``--image-search both`` also how many matches the two agree on."""
    import numpy as np

    out["num_queries"] = len(queries)
    out["match_finest-level_s"] = _match(fa, fb, queries, "finest-level")[0]
    _report(out)
    searches = ["native-cells", "interpolated-descriptors"]
    if args.image_search != "both":
        searches = [args.image_search]
    scopes = [("box20", 20.0)] + ([("global", None)] if args.global_image_candidates else [])
    for scope, box in scopes:
        found = {}
        for scoring in searches:
            key = f"match_image_{scope}_{scoring}_s"
            out[key], found[scoring] = _match(fa, fb, queries, "image", box, scoring)
            _report(out)
        if len(found) == 2:
            a, b = found.values()
            out[f"match_image_{scope}_same_matches"] = int(np.sum(np.all(np.abs(a - b) < 1e-6, 1)))
            _report(out)


def stage_lung4dct(args) -> dict:
    from medfeat.builtins.datasets import Lung4DCTConfig, Lung4DCTDataset

    case = next(
        Lung4DCTDataset(Lung4DCTConfig(root=args.root, cases=[args.case])).registration_cases()
    )
    t0 = time.perf_counter()
    bb = _backbone(args, "unit")  # the lung4dct volumes are already in [0, 1]
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
    bb = _backbone(args, "hu")
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
    cols = [
        ("extract A s", "extract_fixed_s"),
        ("extract B s", "extract_moving_s"),
        ("match, finest-level s", "match_finest-level_s"),
        ("20 mm box, native cells s", "match_image_box20_native-cells_s"),
        ("20 mm box, interpolated s", "match_image_box20_interpolated-descriptors_s"),
        ("20 mm box, same matches", "match_image_box20_same_matches"),
        ("all voxels, native cells s", "match_image_global_native-cells_s"),
        ("all voxels, interpolated s", "match_image_global_interpolated-descriptors_s"),
        ("all voxels, same matches", "match_image_global_same_matches"),
        ("peak RSS GiB", "peak_rss_gib"),
    ]
    rows = [
        "| stage | image (k,j,i) | " + " | ".join(c for c, _ in cols) + " | note |",
        "|---|---|" + "---|" * len(cols) + "---|",
    ]

    def f(v):
        return f"{v:.1f}" if isinstance(v, float) else str(v)

    for name, r in results["stages"].items():
        if "image_shape" not in r:
            blanks = " | " * len(cols)
            rows.append(f"| {name} | {blanks}{r.get('error', r.get('note', ''))} |")
            continue
        cells = " | ".join(f(r.get(k, "-")) for _, k in cols)
        shape = "x".join(map(str, r["image_shape"]))
        rows.append(f"| {name} | {shape} | {cells} | {r.get('note', '')} |")
    return "\n".join(rows) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT.resolve())
    p.add_argument("--case", default="case_002")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--splits", type=int, default=4, help="autoencoder_num_splits (--encoder monai)")
    p.add_argument("--encoder", choices=["streaming", "monai"], default="streaming")
    p.add_argument("--slab-mib", type=int, default=256, help="encoder_slab_mib (streaming)")
    p.add_argument(
        "--encoder-recompute",
        action="store_true",
        help="encoder_recompute: true (one full-resolution activation, slower encoder)",
    )
    p.add_argument("--attention", choices=["fused", "explicit"], default="fused")
    p.add_argument(
        "--architecture",
        choices=["v1", "tiny"],
        default="v1",
        help="tiny: a correctness smoke run of the script only (never a figure)",
    )
    p.add_argument(
        "--image-search",
        choices=["native-cells", "interpolated-descriptors", "both"],
        default="both",
        help="image-voxel scoring to time; 'both' also counts the matches they agree on",
    )
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
