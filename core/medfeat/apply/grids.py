"""The grid an image is resampled onto: a base grid (the fixed image's, a reference image's), with
spacing, size or origin optionally changed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medfeat.errors import GeometryError
from medfeat.geometry import Grid, Image

__all__ = ["output_grid"]


def _vector(name: str, values: Sequence[float] | None, ndim: int) -> np.ndarray | None:
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 1:
        arr = np.repeat(arr, ndim)
    if arr.size != ndim or not np.all(np.isfinite(arr)):
        raise GeometryError(
            f"{name} needs {ndim} finite values (ITK order x, y, z = i, j, k), got {list(values)}.",
            remedy=f"Give {ndim} numbers, e.g. {name} 1.5 1.5 2.5.",
        )
    return arr


def output_grid(
    base: Grid | None,
    reference: Image | Grid | None = None,
    spacing_mm: Sequence[float] | None = None,
    size_ijk: Sequence[int] | None = None,
    origin_mm: Sequence[float] | None = None,
) -> Grid:
    """The output grid: ``reference``'s (else ``base``), then spacing/size/origin replaced.

    Spacing alone keeps the physical box (voxel edges) and picks the size that covers it; size alone
    keeps the box and scales the spacing; both replace the sampling outright. Values are in ITK order
    (i, j, k); the direction always comes from the base grid.
    """
    grid = reference.grid if isinstance(reference, Image) else reference
    grid = grid if grid is not None else base
    if grid is None:
        raise GeometryError(
            "The output grid is unknown: the transforms hold no displacement field and no "
            "reference image was given.",
            remedy="Pass a reference image (--reference IMAGE, e.g. the fixed image), or the "
            "medfeat output folder of the registration.",
        )
    n = grid.ndim
    spacing = _vector("--spacing-mm", spacing_mm, n)
    size = _vector("--size-vox", size_ijk, n)
    origin = _vector("--origin-mm", origin_mm, n)
    if spacing is not None and np.any(spacing <= 0):
        raise GeometryError(
            f"Spacing must be positive, got {spacing.tolist()} mm.", remedy="Give positive mm."
        )
    if size is not None and (np.any(size < 1) or not np.allclose(size, np.round(size))):
        raise GeometryError(
            f"Size must be whole numbers of voxels >= 1, got {size.tolist()}.",
            remedy="Give integers, in ITK order (i, j, k).",
        )
    if spacing is not None and size is not None:
        grid = Grid(tuple(int(s) for s in size[::-1]), tuple(spacing), grid.origin, grid.direction)
    elif spacing is not None:
        extent = np.asarray(grid.size_ijk) * np.asarray(grid.spacing)
        new_size = np.maximum(1, np.round(extent / spacing)).astype(int)
        grid = grid.with_shape_and_spacing(tuple(int(s) for s in new_size[::-1]), tuple(spacing))
    elif size is not None:
        grid = grid.resized(tuple(int(s) for s in size[::-1]))
    if origin is not None:
        grid = Grid(grid.shape, grid.spacing, tuple(origin), grid.direction)
    return grid
