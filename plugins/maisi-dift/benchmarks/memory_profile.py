"""Peak memory of MedDIFT's stages with v1-size RANDOM networks (memory only; times mean nothing).

Each measurement runs in its own process: it builds only the network it needs, then records the
resident memory before the stage and its peak during the stage (psutil sampled every 5 ms, and
``ru_maxrss``). Peaks scale with the voxels of the network input, so 96^3 and 128^3 extrapolate
to 256^3 (x 8 from 128^3).

    python plugins/maisi-dift/benchmarks/memory_profile.py --sizes 96 128 --out out/meddift-memory.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

STAGES = {
    "encoder-monai-splits4": ("encoder", {"encoder": "monai", "splits": 4}),
    "encoder-monai-splits1": ("encoder", {"encoder": "monai", "splits": 1}),
    "encoder-streaming": ("encoder", {"encoder": "streaming"}),
    "encoder-streaming-recompute": ("encoder", {"encoder": "streaming", "recompute": True}),
    "unet-explicit-attention": ("unet", {"attention": "explicit"}),
    "unet-fused-attention": ("unet", {"attention": "fused"}),
    # the whole pipeline: build, extract A, extract B, match 375 queries (20 mm box, native cells)
    "pair": ("pair", {}),
    "pair-recompute": ("pair", {"recompute": True}),
}


def _rss_gib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**30


def _pair_stage(size: int, recompute: bool):
    """The whole pipeline on a generated HU pair of ``size``^3 (networks built inside)."""
    import numpy as np
    import torch

    from medfeat.api import RunContext
    from medfeat.geometry import Grid, Image, PointSet

    gen = torch.Generator().manual_seed(0)
    noise = torch.randn((1, 1, size // 8, size // 8, size // 8), generator=gen)
    vol = torch.nn.functional.interpolate(noise, size=(size,) * 3, mode="trilinear")[0, 0]
    vol = (vol * 600.0 - 300.0).numpy().astype(np.float32)
    grid = Grid.from_shape((size,) * 3, 256.0 / size)  # a 256 mm box at any size
    a, b = Image(vol, grid), Image(np.roll(vol, 3, axis=0), grid)
    pts = grid.array_index_to_world(np.random.default_rng(0).uniform(0.1, 0.9, (375, 3)) * size)

    def stage():
        from medfeat_maisi_dift.backbone import make_maisi_dift
        from medfeat_maisi_dift.config import MaisiDiftConfig, MedDiftMatcherConfig
        from medfeat_maisi_dift.matcher import MedDiftMatcher

        cfg = MaisiDiftConfig(random_weights=True, intensity="hu", encoder_recompute=recompute)
        bb = make_maisi_dift(cfg, RunContext(seed=0))
        fa, fb = bb.extract_pair(a, b)
        del bb
        return MedDiftMatcher(MedDiftMatcherConfig(box_half_size_mm=20.0)).match(
            fa, fb, PointSet(pts)
        )

    return stage


def run_stage(name: str, size: int) -> dict:
    import torch

    from medfeat.resources import PeakMemory

    kind, opts = STAGES[name]
    torch.manual_seed(0)
    if kind == "encoder":
        from medfeat_maisi_dift.encoder_slabs import encode_streaming
        from medfeat_maisi_dift.networks import build_autoencoder

        net = build_autoencoder(num_splits=opts.get("splits", 1))
        x = torch.rand(1, 1, size, size, size)

        def stage():
            if opts["encoder"] == "streaming":
                return encode_streaming(net, x, recompute=opts.get("recompute", False))
            return net.encode(x)
    elif kind == "pair":
        stage = _pair_stage(size, opts.get("recompute", False))
    else:
        from medfeat_maisi_dift.backbone import use_fused_attention
        from medfeat_maisi_dift.diffusion import region_tensor, up_block_features
        from medfeat_maisi_dift.networks import build_unet

        net = build_unet()
        if opts["attention"] == "fused":
            use_fused_attention(net)
        z = torch.randn(1, 4, size // 4, size // 4, size // 4)

        def stage():
            return up_block_features(
                net, z, timestep=20, levels=[0, 1, 2, 3], top_region=region_tensor("thorax"),
                bottom_region=region_tensor("thorax"), spacing=torch.tensor([[100.0] * 3]),
            )  # fmt: skip

    before = _rss_gib()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    with torch.inference_mode(), PeakMemory(0.005) as peak:
        out = stage()
    del out
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {
        "stage": name,
        "size": size,
        "rss_before_gib": round(before, 3),
        "peak_rss_gib": round(peak.peak_mb / 1024, 3),
        "stage_peak_gib": round(peak.peak_mb / 1024 - before, 3),
        "ru_maxrss_gib": round(maxrss, 3),
        "ru_maxrss_before_gib": round(maxrss_before, 3),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[96, 128])
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    p.add_argument("--out", type=Path)
    p.add_argument("--stage", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.stage:
        print(json.dumps(run_stage(args.stage, args.size)), flush=True)
        return 0
    rows = []
    for size in args.sizes:
        for stage in args.stages:
            cmd = [sys.executable, __file__, "--stage", stage, "--size", str(size)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            row = json.loads(lines[-1]) if lines else {"stage": stage, "size": size,
                                                         "error": proc.stderr[-300:]}  # fmt: skip
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
