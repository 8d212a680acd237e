"""The whole registration as one field: a pre-alignment (4x4, fixed -> moving) and a deformable part.

With a pre-alignment ``A`` and a deformable field ``u`` found between the fixed image and the
pre-aligned moving image ``moving(A y)``, a fixed point ``x`` corresponds to the moving point
``A (x + u(x))``; with ``v`` the inverse of ``u``, a moving point ``y`` corresponds to the fixed
point ``z + v(z)``, ``z = A^-1 y``. :func:`whole_forward` and :func:`whole_inverse` sample these
as ITK displacement fields on the fixed and moving images' own grids, so any tool that applies
them (SimpleITK, greedy, ANTs, transformix) reproduces the registration.
"""

from __future__ import annotations

import numpy as np

from medfeat.geometry.field import DisplacementField
from medfeat.geometry.grid import Grid
from medfeat.geometry.working import is_identity

__all__ = ["field_on_grid", "whole_forward", "whole_inverse", "as_float32"]


def field_on_grid(
    field: DisplacementField, grid: Grid, affine: np.ndarray | None = None
) -> np.ndarray:
    """``u(A x)`` for every voxel ``x`` of ``grid``, ``[3, *grid.shape]`` world mm (linear
    interpolation; the border value outside the field's grid)."""
    import torch

    from medfeat.geometry.sampling import resample_tensor

    identity = affine is None or is_identity(affine)
    if identity and field.grid.same_as(grid, atol_mm=1e-6):
        return field.numpy()
    data = torch.from_numpy(np.ascontiguousarray(field.numpy()))
    out = resample_tensor(
        data, field.grid, grid, padding="border", world_affine=None if identity else affine
    )
    return out.numpy()


def _world_points(grid: Grid) -> np.ndarray:
    """World coordinates of the voxels of ``grid``, ``[3, *shape]``."""
    m = grid.to_world_matrix("array")
    axes = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in grid.shape], indexing="ij")
    return np.einsum("wa,a...->w...", m[:3, :3], np.stack(axes)) + m[:3, 3].reshape(3, 1, 1, 1)


def whole_forward(
    deformable: DisplacementField, affine: np.ndarray, grid: Grid
) -> DisplacementField:
    """The fixed->moving field ``A (x + u(x)) - x`` on ``grid`` (the fixed image's)."""
    u = field_on_grid(deformable, grid)
    if is_identity(affine):
        data = u
    else:
        x = _world_points(grid)
        lin, t = affine[:3, :3], affine[:3, 3].reshape(3, 1, 1, 1)
        data = np.einsum("wa,a...->w...", lin, x + u) + t - x
    return DisplacementField(data, grid, "fixed_to_moving")


def whole_inverse(
    deformable_inverse: DisplacementField, affine: np.ndarray, grid: Grid
) -> DisplacementField:
    """The moving->fixed field ``A^-1 y + v(A^-1 y) - y`` on ``grid`` (the moving image's)."""
    if is_identity(affine):
        return DisplacementField(field_on_grid(deformable_inverse, grid), grid, "moving_to_fixed")
    inv = np.linalg.inv(affine)
    v = field_on_grid(deformable_inverse, grid, inv)
    y = _world_points(grid)
    z = np.einsum("wa,a...->w...", inv[:3, :3], y) + inv[:3, 3].reshape(3, 1, 1, 1)
    return DisplacementField(z + v - y, grid, "moving_to_fixed")


def as_float32(field: DisplacementField) -> DisplacementField:
    """The field with its values rounded to float32 (what is written), kept as float64 data."""
    data = field.numpy().astype(np.float32).astype(np.float64)
    return DisplacementField(data, field.grid, field.mapping, dict(field.meta))
