"""Dense displacement fields with their grid, units and mapping (fixed to moving or back) stated."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medfeat.errors import GeometryError
from medfeat.geometry.grid import Grid

#: The ways a field can map: ``x -> x + u(x)`` from the fixed to the moving image, or back.
MAPPINGS = ("fixed_to_moving", "moving_to_fixed")


@dataclass
class DisplacementField:
    """A displacement ``u`` sampled on ``grid`` in world LPS mm, shape ``[ndim, *grid.shape]``.

    Components are world axes (x, y, z) in LPS, as ITK stores them. ``mapping`` says which way the
    field maps: ``fixed_to_moving`` (the default) means a point ``x`` of the grid (the fixed image)
    corresponds to ``x + u(x)`` in the moving image, which is what backward warping
    ``moving(x + u(x))`` uses and what ITK calls a displacement field transform from fixed to
    moving; ``moving_to_fixed`` is the inverse field, on the moving grid. (Not to be confused with
    ``grid.direction``, the grid's direction cosine matrix.)
    """

    data: Any
    grid: Grid
    mapping: str = "fixed_to_moving"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if tuple(self.data.shape) != (self.grid.ndim, *self.grid.shape):
            raise GeometryError(
                f"Displacement field of shape {tuple(self.data.shape)} does not match its grid "
                f"(expected {(self.grid.ndim, *self.grid.shape)})."
            )
        if self.mapping not in MAPPINGS:
            raise GeometryError(
                f"Unknown field mapping {self.mapping!r}.",
                remedy=f"Use one of {', '.join(MAPPINGS)}.",
            )

    def numpy(self) -> np.ndarray:
        data = self.data
        if hasattr(data, "detach"):
            data = data.detach().cpu().numpy()
        return np.asarray(data, dtype=np.float64)

    @classmethod
    def from_array_voxels(
        cls, disp_vox: Any, grid: Grid, mapping: str = "fixed_to_moving"
    ) -> DisplacementField:
        """Build from a displacement in numpy-order voxel units ``[ndim, *shape]`` (engine convention)."""
        arr = (
            disp_vox.detach().cpu().numpy() if hasattr(disp_vox, "detach") else np.asarray(disp_vox)
        )
        # world component c = sum over array axes a of M[c, a] * u_a (M: array -> world vectors),
        # component by component: no [..., ndim] copies, and nothing to add for zero entries
        # (an axis-aligned grid has one non-zero per row)
        m = grid.index_to_world_matrix()[:-1, :-1][:, ::-1]
        world = np.zeros(arr.shape, dtype=np.float64)
        for c in range(grid.ndim):
            for a in range(grid.ndim):
                if m[c, a] != 0.0:
                    world[c] += m[c, a] * arr[a]
        return cls(world, grid, mapping)

    def to_array_voxels(self) -> np.ndarray:
        """Displacement in numpy-order voxel units of its own grid, ``[ndim, *shape]``."""
        vec = np.moveaxis(self.numpy(), 0, -1)
        return np.moveaxis(self.grid.vector_world_to_array(vec), -1, 0)

    def sample_world(self, points: np.ndarray) -> np.ndarray:
        """Displacement (world mm) at world points, by linear interpolation, clamped at the border."""
        from scipy.ndimage import map_coordinates

        idx = self.grid.world_to_array_index(points)
        data = self.numpy()
        return np.stack(
            [
                map_coordinates(data[c], idx.T, order=1, mode="nearest")
                for c in range(self.grid.ndim)
            ],
            axis=1,
        )

    def transform_points(self, points: np.ndarray) -> np.ndarray:
        """Map world points of the field's grid through ``x -> x + u(x)``."""
        return np.asarray(points, dtype=np.float64) + self.sample_world(points)
