"""Speed and memory of the DINOv3 registration pipeline with the FULL ViT-L/16 and RANDOM weights.

Measures, per image pair: model build, slice encoding (per volume and per encoded slice), joint
PCA, ConvexAdam optimisation and peak resident memory. Random weights make every accuracy figure
meaningless, so none is reported. The run is bounded: at most ``--max-slices`` slices are encoded
per volume (the stride grows accordingly; the other slices are interpolated as in the method).

    python plugins/dinov3/benchmarks/bench_vitl16.py --data-root ../shared/data --out out/bench-dinov3

Writes ``results.json`` and ``results.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path


def load_pairs(root: Path, which: list[str]):
    """(name, fixed, moving) images; the abdomen CT is pre-aligned to the MR as in the example."""
    from medfeat_dinov3.datasets import _centre_mm, translated

    from medfeat.io.images import read_image

    pairs = []
    if "lung4dct" in which:
        case = root / "lung4dct" / "case_002"
        pairs.append(("lung4dct case_002 T00<-T50", read_image(case / "T00.nii.gz"),
                      read_image(case / "T50.nii.gz"), "mr"))  # fmt: skip
    if "abdomen" in which:
        mr = read_image(root / "abdomen-ct" / "example_mr_sm.nii.gz")
        ct = read_image(root / "abdomen-ct" / "example_ct_sm.nii.gz")
        ct = translated(ct, _centre_mm(mr, "body-centroids") - _centre_mm(ct, "body-centroids"))
        pairs.append(("abdomen MR<-CT", mr, ct, "auto"))
    return pairs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("out/bench-dinov3"))
    parser.add_argument("--pairs", nargs="+", default=["lung4dct", "abdomen"])
    parser.add_argument("--model", default="vit-l16")
    parser.add_argument("--patch-spacing-mm", type=float, default=8.0)
    parser.add_argument("--max-slices", type=int, default=3, help="Encoded slices per volume.")
    parser.add_argument("--pca-dims", type=int, default=24)
    parser.add_argument("--adam-iterations", type=int, default=80)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    import torch
    from medfeat_dinov3.backbone import make_dinov3_slices
    from medfeat_dinov3.config import Dinov3SlicesConfig

    from medfeat.builtins.optimisers import ConvexAdam, ConvexAdamConfig
    from medfeat.builtins.transforms import JointPCA, PCAConfig
    from medfeat.context import RunContext
    from medfeat.resources import PeakMemory

    context = RunContext(device=args.device, seed=0)
    rows = []
    for name, fixed, moving, modality in load_pairs(args.data_root, args.pairs):
        with PeakMemory() as memory:
            row: dict = {"pair": name}
            slices = max(fixed.grid.shape[0], moving.grid.shape[0])
            stride = max(1, math.ceil((slices - 1) / max(args.max_slices - 1, 1)))
            config = Dinov3SlicesConfig(
                model=args.model,
                random_weights=True,
                modality=modality,
                patch_spacing_mm=args.patch_spacing_mm,
                slice_stride_vox=stride,
                batch_slices=1,
            )
            start = time.perf_counter()
            backbone = make_dinov3_slices(config, context)  # warns: random weights
            row["build_s"] = time.perf_counter() - start
            feats = []
            for role, image in (("fixed", fixed), ("moving", moving)):
                start = time.perf_counter()
                feats.append(backbone.extract(image))
                stats = backbone.last_stats
                row[f"{role}_encode_s"] = time.perf_counter() - start
                row[f"{role}_encoded_slices"] = stats["encoded_slices"]
                row[f"{role}_slices"] = stats["slices"]
                row[f"{role}_tokens"] = list(feats[-1].levels[0].data.shape[2:])
                row[f"{role}_s_per_slice"] = stats["encode_seconds"] / max(
                    stats["encoded_slices"], 1
                )
            start = time.perf_counter()
            pca = JointPCA(PCAConfig(dims=args.pca_dims), seed=0).apply(feats, [None, None])
            row["pca_s"] = time.perf_counter() - start
            optimiser = ConvexAdam(
                ConvexAdamConfig(
                    smoothness_weight=1.0,  # the example's settings, lambda = 1
                    # 4 feature voxels and 4 grid steps, as the example's former voxel settings
                    grid_spacing_mm=4 * args.patch_spacing_mm,
                    search_radius_mm=16 * args.patch_spacing_mm,
                    adam_iterations=args.adam_iterations,
                ),
                context,
            )
            start = time.perf_counter()
            optimiser.register(fixed, moving, pca[0], pca[1])
            row["optimisation_s"] = time.perf_counter() - start
        row["peak_rss_mb"] = memory.peak_mb
        rows.append(row)
        print(json.dumps(row), flush=True)
        del feats, pca, backbone

    conditions = {
        "model": f"{args.model}, RANDOM weights (speed/memory only, no accuracy)",
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "patch_spacing_mm": args.patch_spacing_mm,
        "max_encoded_slices_per_volume": args.max_slices,
        "adam_iterations": args.adam_iterations,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps({"conditions": conditions, "rows": rows}, indent=2)
    )
    lines = [
        "| pair | tokens/slice (fixed) | encoded/total slices (fixed, moving) | s per slice | "
        "encode fixed + moving (s) | PCA (s) | optimisation (s) | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['pair']} | {'x'.join(map(str, r['fixed_tokens']))} | "
            f"{r['fixed_encoded_slices']}/{r['fixed_slices']}, "
            f"{r['moving_encoded_slices']}/{r['moving_slices']} | "
            f"{(r['fixed_s_per_slice'] + r['moving_s_per_slice']) / 2:.1f} | "
            f"{r['fixed_encode_s']:.1f} + {r['moving_encode_s']:.1f} | {r['pca_s']:.1f} | "
            f"{r['optimisation_s']:.1f} | {r['peak_rss_mb']:.0f} |"
        )
    (args.out / "results.md").write_text("\n".join(lines) + "\n\n" + json.dumps(conditions) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
