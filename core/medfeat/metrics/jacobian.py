"""Regularity of a displacement field: Jacobian determinant of ``x -> x + u(x)`` in world mm."""

from __future__ import annotations

from typing import Any

import numpy as np

from medfeat.errors import GeometryError
from medfeat.geometry import DisplacementField, Image


def jacobian_determinant_mm(field: DisplacementField) -> np.ndarray:
    """det(I + du/dx) of a world-mm displacement field at every voxel, shape ``grid.shape``.

    Derivatives are taken along the array axes (central differences inside, one-sided at the border,
    ``np.gradient``) and mapped to world axes through the grid's spacing and direction, so the result is
    correct for anisotropic, rotated grids.
    """
    grid, u = field.grid, field.numpy()
    n = grid.ndim
    # d u_c / d array-axis a, then reorder array axes (k, j, i) into ITK index order (i, j, k).
    grads = np.stack([np.stack(np.gradient(u[c]), axis=-1)[..., ::-1] for c in range(n)], axis=-2)
    index_per_world = np.linalg.inv(grid.direction @ np.diag(grid.spacing))  # d index / d world
    jac = grads @ index_per_world + np.eye(n)
    return np.linalg.det(jac)


def _det_and_mask(
    field_or_det: DisplacementField | np.ndarray, mask: Image | np.ndarray | None
) -> np.ndarray:
    det = (
        jacobian_determinant_mm(field_or_det)
        if isinstance(field_or_det, DisplacementField)
        else np.asarray(field_or_det)
    )
    if mask is None:
        return det.ravel()
    m = np.asarray(mask.numpy() if isinstance(mask, Image) else mask).astype(bool)
    if m.shape != det.shape:
        raise GeometryError(
            f"Mask of shape {m.shape} does not match the field's grid of shape {det.shape}.",
            remedy="Resample the mask onto the field's grid (interpolation='label').",
        )
    return det[m]


def sdlogj(field_or_det: DisplacementField | np.ndarray, mask: Any = None) -> float:
    """Standard deviation of log(det J), det clipped to [1e-9, 1e9] as in Learn2Reg; inside ``mask`` if given."""
    det = _det_and_mask(field_or_det, mask)
    return float(np.log(np.clip(det, 1e-9, 1e9)).std())


def folding_pct(field_or_det: DisplacementField | np.ndarray, mask: Any = None) -> float:
    """Percentage of voxels (inside ``mask`` if given) where det J <= 0 (folding)."""
    det = _det_and_mask(field_or_det, mask)
    return float(100.0 * np.mean(det <= 0))
