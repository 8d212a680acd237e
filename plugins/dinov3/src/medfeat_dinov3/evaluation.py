"""Per-label Dice and HD95 (mm) of a finished registration run on a label-mapped pair.

The registration pipeline writes Dice and SDlogJ; this adds HD95 per shared label, before and after,
from the run's ``warped_moving_labels.nii.gz`` (needs ``output.write_warped: true``)::

    python -m medfeat_dinov3.evaluation PIPELINE.yaml OUT_DIR
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from medfeat.api import Image


def label_metrics(fixed: Image, moving_on_fixed: Image) -> dict[str, dict[str, float]]:
    """Dice and HD95 of every shared label present in ``fixed`` (labels on the same grid)."""
    from medfeat.api import EmptyLabelWarning, dice_per_label, hd95_mm

    labels = sorted(set(np.unique(fixed.numpy()).tolist()) - {0})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyLabelWarning)
        dice = dice_per_label(fixed, moving_on_fixed, labels)
        return {
            str(k): {"dice": dice[k], "hd95_mm": hd95_mm(fixed, moving_on_fixed, k)} for k in labels
        }


def evaluate_run(pipeline: Path, out_dir: Path) -> dict:
    """Label metrics before (moving labels resampled as they are) and after registration."""
    from medfeat.api import (
        InputFileError,
        atomic_write_json,
        parse_yaml,
        read_image,
        resample_to_grid,
    )
    from medfeat_dinov3.config import LabelMappedFilesConfig
    from medfeat_dinov3.datasets import LabelMappedFiles

    data = dict(parse_yaml(pipeline.read_text(), str(pipeline)).data["data"])
    data.pop("name")
    case = next(LabelMappedFiles(LabelMappedFilesConfig(**data)).registration_cases())
    warped_path = out_dir / case.id / "warped_moving_labels.nii.gz"
    if not warped_path.is_file():
        raise InputFileError(
            f"{warped_path} does not exist.",
            remedy="Run the pipeline with output.write_warped=true into this folder first.",
        )
    before = resample_to_grid(case.moving_labels, case.fixed.grid, "nearest")
    warped = read_image(warped_path)
    result = {
        "before": label_metrics(case.fixed_labels, before),
        "after": label_metrics(case.fixed_labels, warped),
    }
    for key in ("before", "after"):
        values = result[key].values()
        result[f"mean_dice_{key}"] = float(np.nanmean([v["dice"] for v in values]))
        result[f"mean_hd95_mm_{key}"] = float(np.nanmean([v["hd95_mm"] for v in values]))
    atomic_write_json(out_dir / case.id / "label_metrics.json", result)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Dice and HD95 per shared label of a finished run."
    )
    parser.add_argument("pipeline", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    result = evaluate_run(args.pipeline, args.out_dir)
    for key in ("before", "after"):
        print(
            f"{key}: mean Dice {result[f'mean_dice_{key}']:.3f}, "
            f"mean HD95 {result[f'mean_hd95_mm_{key}']:.1f} mm"
        )


if __name__ == "__main__":
    main()
