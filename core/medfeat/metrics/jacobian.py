"""Regularity of a displacement field: Jacobian determinant of ``x -> x + u(x)`` in world mm.

The determinant is computed slab by slab along the first array axis: central differences (one-sided
at the border, as ``np.gradient``) in float64 on a few planes at a time, the Jacobian entries
mapped to world axes through the grid's spacing and direction, and the 2x2/3x3 determinant written
out. No full-volume ``[..., 3, 3]`` temporaries are made; the result is stored as float32 by
default (what the report and ``medfeat apply`` write), which keeps every value to 6e-8 relative.
Compute it once per field and pass the array to :func:`sdlogj` and :func:`folding_pct`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from medfeat.errors import GeometryError
from medfeat.geometry import DisplacementField, Image

#: Voxels per slab (about 1 MiB per float64 temporary; a few dozen temporaries stay in cache).
SLAB_VOXELS = 1 << 17


def jacobian_determinant_mm(
    field: DisplacementField, dtype: npt.DTypeLike = np.float32
) -> np.ndarray:
    """det(I + du/dx) of a world-mm displacement field at every voxel, shape ``grid.shape``.

    Derivatives are taken along the array axes (central differences inside, one-sided at the border,
    like ``np.gradient``; zero along an axis of one voxel) and mapped to world axes through the
    grid's spacing and direction, so the result is correct for anisotropic, rotated grids. The
    arithmetic is float64; ``dtype`` is the type of the returned array (float32 by default).
    """
    grid = field.grid
    u = _values(field)
    n = grid.ndim
    # d index / d world, rows in ITK index order (i, j, k) -> rows in array-axis order (k, j, i)
    per_array_axis = np.linalg.inv(grid.direction @ np.diag(grid.spacing))[::-1]
    shape = grid.shape
    out = np.empty(shape, dtype=dtype)
    step = max(1, SLAB_VOXELS // max(1, math.prod(shape[1:])))
    for start in range(0, shape[0], step):
        stop = min(start + step, shape[0])
        out[start:stop] = _det_of_slab(u, start, stop, per_array_axis, n)
    return out


def _values(field: DisplacementField) -> np.ndarray:
    """The field's array as stored (float32 or float64), without a full-volume float64 copy."""
    data = field.data
    if hasattr(data, "detach"):
        data = data.detach().cpu().numpy()
    data = np.asarray(data)
    return data if data.dtype in (np.float32, np.float64) else data.astype(np.float64)


def _central(f: np.ndarray, axis: int) -> np.ndarray:
    """``np.gradient(f, axis=axis)`` (unit spacing, first-order edges); zeros along a 1-voxel axis."""
    out = np.empty_like(f)
    size = f.shape[axis]
    if size < 2:
        out[...] = 0.0
        return out

    def part(a: int | None, b: int | None) -> tuple[slice, ...]:
        return (slice(None),) * axis + (slice(a, b),)

    inner = out[part(1, -1)]
    np.subtract(f[part(2, None)], f[part(None, -2)], out=inner)
    inner *= 0.5
    np.subtract(f[part(1, 2)], f[part(0, 1)], out=out[part(0, 1)])
    np.subtract(f[part(-1, None)], f[part(-2, -1)], out=out[part(-1, None)])
    return out


def _det_of_slab(
    u: np.ndarray, start: int, stop: int, per_array_axis: np.ndarray, n: int
) -> np.ndarray:
    """det J on array planes ``start:stop`` of the first axis (one plane of halo on each side)."""
    lo, hi = max(start - 1, 0), min(stop + 1, u.shape[1])
    keep = slice(start - lo, start - lo + (stop - start))
    jac: list[list[np.ndarray]] = []
    for c in range(n):
        comp = np.asarray(u[c, lo:hi], dtype=np.float64)
        grads = [_central(comp, 0)[keep]] + [_central(comp[keep], a) for a in range(1, n)]
        row = []
        for w in range(n):
            entry = grads[0] * per_array_axis[0, w]
            for a in range(1, n):
                entry += grads[a] * per_array_axis[a, w]
            if c == w:
                entry += 1.0
            row.append(entry)
        jac.append(row)
    if n == 2:
        return jac[0][0] * jac[1][1] - jac[0][1] * jac[1][0]
    (a, b, c), (d, e, f), (g, h, i) = jac
    return a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)


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
    """Standard deviation of log(det J), det clipped to [1e-9, 1e9] as in Learn2Reg; inside ``mask`` if given.

    Pass the determinant (:func:`jacobian_determinant_mm`) when it is needed more than once.
    """
    det = _det_and_mask(field_or_det, mask)
    return float(np.log(np.clip(det, 1e-9, 1e9, dtype=np.float64)).std())


def folding_pct(field_or_det: DisplacementField | np.ndarray, mask: Any = None) -> float:
    """Percentage of voxels (inside ``mask`` if given) where det J <= 0 (folding)."""
    det = _det_and_mask(field_or_det, mask)
    return float(100.0 * np.mean(det <= 0))
