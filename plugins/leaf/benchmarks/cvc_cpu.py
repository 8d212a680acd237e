"""CPU benchmark: LEAF `small` preset trained from scratch on CVC-ClinicDB at 128x128.

Trains with a hard wall-clock bound, with or without distillation from the weight-free
`patch-descriptor-2d` teacher, and evaluates single-step inference on the held-out test sequences
(split by video sequence, never by frame). Figures from a bounded CPU run are NOT comparable
with the paper's 95.2 Dice (pretrained LDM weights, 100k steps on a GPU).

    python plugins/leaf/benchmarks/cvc_cpu.py --variant both --minutes 14 --out bench-leaf

Needs ../shared/data/polyp-cvc (or --data-root); writes <out>/<variant>/results.json and
<out>/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("no-distill", "distill-patch")


def config(
    variant: str, minutes: float, size: int, steps: int, lr: float, ema: float, encoder: list[int]
) -> dict:
    return {
        "architecture": {"preset": "small", "mask_downsample": 8, "encoder_channels": encoder},
        "prediction": "x0",
        "distillation": {
            "enabled": variant != "no-distill",
            "weight": 0.75,
            "unet_block": 0,
            "projector_hidden": 256,
        },
        "training": {
            "image_size_px": size,
            "batch_size": 4,
            "max_steps": steps,
            "max_minutes": minutes,
            "lr": lr,
            "warmup_steps": 20,
            "ema_decay": ema,
            "checkpoint_every_steps": 100,
            "validate_every_steps": 10**9,
            "teacher_image_size_px": None,
        },
    }


def separation(model, samples, size: int) -> dict:
    """Threshold-free sign of learning: mean predicted foreground probability inside and outside
    the true masks (single step, seed 0)."""
    import torch
    from medfeat_leaf.tensors import image_tensor, mask_tensor

    g = torch.Generator().manual_seed(0)
    inside, outside = [], []
    for s in samples:
        prob = model.predict_probability(image_tensor(s.image, size)[None] * 2 - 1, g)[0]
        truth = mask_tensor(s.labels, size) > 0
        inside.append(float(prob[truth].mean()) if truth.any() else float("nan"))
        outside.append(float(prob[~truth].mean()))
    import numpy as np

    return {"p_inside": float(np.nanmean(inside)), "p_outside": float(np.mean(outside))}


def evaluate_saved(args: argparse.Namespace, variant: str) -> dict:
    """Re-evaluate <out>/<variant>/leaf.pt on the test sequences (no training)."""
    import torch

    torch.set_num_threads(args.threads)
    from medfeat_leaf.config import ImageMaskFolderConfig
    from medfeat_leaf.datasets import ImageMaskFolder
    from medfeat_leaf.heads import load_trained
    from medfeat_leaf.train import evaluate

    out = Path(args.out) / variant
    data = ImageMaskFolder(ImageMaskFolderConfig(root=args.data_root, grouping="cvc-clinicdb"))
    test = list(data.segmentation_samples("test"))
    model = load_trained(out / "leaf.pt")
    result = json.loads((out / "results.json").read_text())
    result["test"] = evaluate(model, test, args.size, "cpu", seed=0)
    result["test_separation"] = separation(model, test, args.size)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    return result


def run_one(args: argparse.Namespace, variant: str) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    from medfeat_leaf.backbone import PatchDescriptor2D
    from medfeat_leaf.config import ImageMaskFolderConfig, LeafConfig
    from medfeat_leaf.datasets import ImageMaskFolder
    from medfeat_leaf.heads import LeafHead, load_trained
    from medfeat_leaf.train import evaluate

    from medfeat.context import RunContext, seed_everything

    seed_everything(args.seed)
    out = Path(args.out) / variant
    data = ImageMaskFolder(ImageMaskFolderConfig(root=args.data_root, grouping="cvc-clinicdb"))
    train = list(data.segmentation_samples("train"))
    val = list(data.segmentation_samples("validation"))
    test = list(data.segmentation_samples("test"))
    cfg = LeafConfig.model_validate(
        config(
            variant,
            args.minutes,
            args.size,
            args.max_steps,
            args.lr,
            args.ema_decay,
            args.encoder_channels,
        )
    )
    teacher = PatchDescriptor2D(patch_size_px=16) if variant != "no-distill" else None
    head = LeafHead(cfg, RunContext(seed=args.seed, out_dir=out))
    t0 = time.time()
    fit = head.fit(train, val, out, RunContext(seed=args.seed, out_dir=out), backbone=teacher)
    wall = time.time() - t0
    model = load_trained(out / "leaf.pt")
    test_scores = evaluate(model, test, args.size, "cpu", seed=0)
    sep = separation(model, test, args.size)
    result = {
        "variant": variant,
        "splits": {"train": len(train), "validation": len(val), "test": len(test)},
        "test_groups": sorted({s.group for s in test}),
        "steps": fit["steps"],
        "train_wall_s": wall,
        "final_loss": fit.get("final_loss"),
        "validation": fit.get("validation"),
        "test": test_scores,
        "test_separation": sep,
        "config": cfg.model_dump(mode="json"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": args.threads,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
    }
    (out / "results.json").write_text(json.dumps(result, indent=2))
    return result


def table(results: list[dict]) -> str:
    lines = [
        "| variant | steps | train wall (s) | test Dice % | test IoU % | val Dice % | test images "
        "| mean p(fg) in / out of masks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        sep = r.get("test_separation", {})
        lines.append(
            f"| {r['variant']} | {r['steps']} | {r['train_wall_s']:.0f} | {100 * r['test']['dice']:.1f} "
            f"| {100 * r['test']['iou']:.1f} | {100 * r['validation']['dice']:.1f} | {r['test']['n']} "
            f"| {sep.get('p_inside', float('nan')):.2f} / {sep.get('p_outside', float('nan')):.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--variant", choices=[*VARIANTS, "both"], default="both")
    p.add_argument("--data-root", type=Path, default=Path("../shared/data/polyp-cvc"))
    p.add_argument("--out", type=Path, default=Path("bench-leaf"))
    p.add_argument("--minutes", type=float, default=14.0, help="training wall-clock bound per run")
    p.add_argument("--max-steps", type=int, default=100_000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-only", action="store_true", help="re-evaluate saved runs in --out")
    p.add_argument("--ema-decay", type=float, default=0.98)
    p.add_argument(
        "--encoder-channels",
        type=int,
        nargs=4,
        default=[8, 16, 32, 32],
        help="image-encoder widths (4 levels for the 8x latent)",
    )
    args = p.parse_args()
    if not (args.data_root / "images").is_dir():
        print(f"{args.data_root} not found: the CVC-ClinicDB frames are needed.", file=sys.stderr)
        return 2
    if args.eval_only:
        results = [evaluate_saved(args, v) for v in VARIANTS]
        (args.out / "results.md").write_text(table(results))
        print(table(results))
        return 0
    if args.variant != "both":
        run_one(args, args.variant)
        return 0
    # both variants in parallel, one process (and thread) each: same conditions for both
    procs = [
        subprocess.Popen([sys.executable, __file__, *sys.argv[1:], "--variant", v])
        for v in VARIANTS
    ]
    if any(proc.wait() for proc in procs):
        return 1
    results = [json.loads((args.out / v / "results.json").read_text()) for v in VARIANTS]
    (args.out / "results.md").write_text(table(results))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
