"""Target registration error between paired landmarks, in millimetres."""

from __future__ import annotations

import numpy as np

from medfeat.errors import LandmarkError
from medfeat.geometry import PointSet


def tre(pred_world: PointSet | np.ndarray, target_world: PointSet | np.ndarray) -> dict[str, float]:
    """Euclidean distances between row-paired world points (mm): mean, std, median, p25, p75, p95, max, n.

    Raises :class:`LandmarkError` when the counts or dimensions differ.
    """
    pred = (
        pred_world
        if isinstance(pred_world, PointSet)
        else PointSet(pred_world, meta={"path": "predicted points"})
    )
    target = (
        target_world
        if isinstance(target_world, PointSet)
        else PointSet(target_world, meta={"path": "target points"})
    )
    pred.check_paired_with(target)
    if pred.points.shape[1] != target.points.shape[1]:
        raise LandmarkError(
            f"Predicted points are {pred.points.shape[1]}D but target points are {target.points.shape[1]}D.",
            remedy="Compare point sets of the same image dimension.",
        )
    d = np.linalg.norm(pred.points - target.points, axis=1)
    p25, median, p75, p95 = np.percentile(d, [25, 50, 75, 95])
    return {
        "mean": float(d.mean()),
        "std": float(d.std()),
        "median": float(median),
        "p25": float(p25),
        "p75": float(p75),
        "p95": float(p95),
        "max": float(d.max()),
        "n": int(len(d)),
    }
