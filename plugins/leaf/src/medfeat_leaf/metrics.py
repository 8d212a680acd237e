"""The paper's metrics: mean (over images) Dice and IoU of binary masks."""

from __future__ import annotations

import numpy as np


def dice_iou(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Dice and IoU of two binary masks; both 1.0 when both are empty."""
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    inter, total = np.logical_and(p, t).sum(), p.sum() + t.sum()
    if total == 0:
        return 1.0, 1.0
    union = total - inter
    return float(2 * inter / total), float(inter / union)


def mean_dice_iou(pairs) -> dict[str, float]:
    """``{"dice": mean, "iou": mean, "n": count}`` over (prediction, truth) pairs."""
    scores = np.array([dice_iou(p, t) for p, t in pairs], dtype=np.float64).reshape(-1, 2)
    return {"dice": float(scores[:, 0].mean()), "iou": float(scores[:, 1].mean()), "n": len(scores)}
