"""Lossless conversion between :class:`Image`/:class:`Grid` and SimpleITK images.

SimpleITK is imported inside the functions so that ``import medfeat.io`` stays light.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medfeat.geometry import Grid, Image


def sitk_reason(exc: Exception) -> str:
    """The informative lines of a SimpleITK exception, without the C++ file/line noise."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    lines = [
        ln.replace("sitk::ERROR:", "").strip()
        for ln in lines
        if not ln.startswith("Exception thrown")
    ]
    return " ".join(lines)[:400] or type(exc).__name__


def set_geometry(sitk_image: Any, grid: Grid) -> Any:
    """Copy spacing, origin and direction of ``grid`` onto a SimpleITK image (in place)."""
    sitk_image.SetSpacing(tuple(float(s) for s in grid.spacing))
    sitk_image.SetOrigin(tuple(float(o) for o in grid.origin))
    sitk_image.SetDirection(tuple(float(d) for d in grid.direction.flatten()))
    return sitk_image


def grid_from_sitk(sitk_image: Any) -> Grid:
    """The :class:`Grid` of a 2D/3D SimpleITK image (shape in numpy order)."""
    ndim = sitk_image.GetDimension()
    return Grid(
        tuple(reversed(sitk_image.GetSize())),
        sitk_image.GetSpacing(),
        sitk_image.GetOrigin(),
        np.asarray(sitk_image.GetDirection()).reshape(ndim, ndim),
    )


def image_to_sitk(image: Image) -> Any:
    """SimpleITK image with the same voxels and geometry; channels become vector components."""
    import SimpleITK as sitk

    arr = image.numpy()
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if image.num_channels > 1 or arr.ndim > image.grid.ndim:
        out = sitk.GetImageFromArray(np.ascontiguousarray(np.moveaxis(arr, 0, -1)), isVector=True)
    else:
        out = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    return set_geometry(out, image.grid)


def sitk_to_image(sitk_image: Any, meta: dict | None = None) -> Image:
    """:class:`Image` from a 2D/3D SimpleITK image; vector components become the channel axis."""
    import SimpleITK as sitk

    grid = grid_from_sitk(sitk_image)
    arr = sitk.GetArrayFromImage(sitk_image)
    if sitk_image.GetNumberOfComponentsPerPixel() > 1:
        arr = np.moveaxis(arr, -1, 0)
    return Image(arr, grid, dict(meta or {}))


def reference_image(grid: Grid, pixel_id: int | None = None) -> Any:
    """An empty SimpleITK image on ``grid``, used as the output space of resampling."""
    import SimpleITK as sitk

    ref = sitk.Image(list(grid.size_ijk), pixel_id if pixel_id is not None else sitk.sitkUInt8)
    return set_geometry(ref, grid)


def field_to_sitk(data_world: np.ndarray, grid: Grid) -> Any:
    """A float64 vector image ``[*shape, ndim]`` in world LPS mm from a ``[ndim, *shape]`` array."""
    import SimpleITK as sitk

    vec = np.ascontiguousarray(np.moveaxis(np.asarray(data_world, dtype=np.float64), 0, -1))
    return set_geometry(sitk.GetImageFromArray(vec, isVector=True), grid)
