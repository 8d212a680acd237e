"""`medfeat leaf-stability`: Dice spread over inference seeds (LEAF paper, Table 4)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "leaf-stability",
        help="LEAF: run single-step inference with N seeds, report mean and std of Dice",
    )
    p.add_argument("checkpoint", type=Path, help="leaf.pt written by a LEAF training run")
    p.add_argument("root", type=Path, help="folder with images/ and masks/")
    p.add_argument("--split", default="test", choices=["train", "validation", "test", "all"])
    p.add_argument("--grouping", default="none", choices=["none", "cvc-clinicdb"])
    p.add_argument("--split-csv", type=Path, default=None)
    p.add_argument("--seeds", type=int, default=10, help="number of inference seeds")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.set_defaults(func=cmd_stability)


def stability(model, samples, size_px: int, device: str, seeds: int) -> dict:
    """Mean Dice/IoU per seed, and their mean and (population) standard deviation."""
    import numpy as np

    from medfeat_leaf.train import evaluate

    runs = [evaluate(model, samples, size_px, device, seed=s) for s in range(seeds)]
    dice = np.array([r["dice"] for r in runs])
    return {
        "seeds": seeds,
        "dice_per_seed": dice.tolist(),
        "dice_mean": float(dice.mean()),
        "dice_std": float(dice.std()),
        "iou_mean": float(np.mean([r["iou"] for r in runs])),
        "n_images": runs[0]["n"] if runs else 0,
    }


def cmd_stability(args: argparse.Namespace) -> int:
    from medfeat.api import resolve_device
    from medfeat_leaf.config import ImageMaskFolderConfig
    from medfeat_leaf.datasets import ImageMaskFolder
    from medfeat_leaf.heads import load_trained

    device = resolve_device(args.device)
    data = ImageMaskFolder(
        ImageMaskFolderConfig(root=args.root, grouping=args.grouping, split_csv=args.split_csv)
    )
    model = load_trained(args.checkpoint).to(device)
    samples = list(data.segmentation_samples(args.split))
    result = stability(model, samples, model.config.training.image_size_px, device, args.seeds)
    print(json.dumps(result, indent=2))
    if args.json:
        from medfeat.api import atomic_write_json

        atomic_write_json(args.json, result)
    return 0
