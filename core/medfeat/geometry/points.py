"""Point sets in world coordinates (LPS mm)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medfeat.errors import LandmarkError


@dataclass
class PointSet:
    """``points`` are world LPS millimetres, shape ``[N, ndim]``; ``space`` names the image they live in."""

    points: np.ndarray
    space: str = "world-lps-mm"
    labels: list[str] | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.points = np.atleast_2d(np.asarray(self.points, dtype=np.float64))
        if self.points.ndim != 2 or self.points.shape[1] not in (2, 3):
            raise LandmarkError(
                f"Points must be an [N, 2] or [N, 3] array, got shape {self.points.shape}."
            )
        if not np.all(np.isfinite(self.points)):
            raise LandmarkError(
                f"{self.meta.get('path', 'Point set')} has NaN/Inf coordinates.",
                remedy="Remove or fix those rows.",
            )
        if self.labels is not None and len(self.labels) != len(self.points):
            raise LandmarkError(f"{len(self.labels)} labels for {len(self.points)} points.")

    def __len__(self) -> int:
        return len(self.points)

    def check_paired_with(self, other: PointSet) -> None:
        """Raise when two point sets cannot be paired row by row."""
        if len(self) != len(other):
            raise LandmarkError(
                f"Landmark counts differ: {len(self)} in {self.meta.get('path', 'the first set')} but "
                f"{len(other)} in {other.meta.get('path', 'the second set')}. Rows are paired by order, so both "
                "files must list the same points.",
                remedy="Check that both files belong to the same case and were exported with the same point list.",
            )
