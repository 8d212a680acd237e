"""Resample images onto grids and warp them with displacement fields, in world coordinates (SimpleITK)."""

from __future__ import annotations

from typing import Any

import numpy as np

from medfeat.errors import ConfigError, GeometryError
from medfeat.geometry import DisplacementField, Grid, Image

INTERPOLATIONS = ("linear", "nearest", "label", "label-gaussian", "bspline")


def _interpolator(name: str) -> Any:
    import SimpleITK as sitk

    table = {
        "linear": sitk.sitkLinear,
        "nearest": sitk.sitkNearestNeighbor,
        "label": sitk.sitkNearestNeighbor,
        "label-gaussian": sitk.sitkLabelGaussian,
        "bspline": sitk.sitkBSpline,
    }
    if name not in table:
        raise ConfigError(
            f"Unknown interpolation {name!r}.",
            remedy=f"Use one of {', '.join(INTERPOLATIONS)} ('label' or 'label-gaussian' for label maps).",
        )
    return table[name]


def _resample(
    image: Image, grid: Grid, transform: Any, interpolation: str, default_value: float
) -> Image:
    import SimpleITK as sitk

    from medfeat.io.sitk_bridge import image_to_sitk, reference_image, sitk_to_image

    interp = _interpolator(interpolation)
    src = image_to_sitk(image)
    if interpolation in ("linear", "bspline") and not np.issubdtype(
        image.numpy().dtype, np.floating
    ):
        src = sitk.Cast(
            src,
            sitk.sitkVectorFloat32 if src.GetNumberOfComponentsPerPixel() > 1 else sitk.sitkFloat32,
        )
    out = sitk.Resample(
        src, reference_image(grid), transform, interp, float(default_value), src.GetPixelID()
    )
    return sitk_to_image(out, {**resampled_meta(image.meta), "resampled_with": interpolation})


def resampled_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` of an image for its resampled copy: without the keys that identify the source
    (file checksums, content key; :func:`medfeat.geometry.image.derived_meta`), so the copy
    never claims the source file's checksum nor shares its cached features."""
    from medfeat.geometry.image import derived_meta

    return derived_meta(meta)


def resample_to_grid(
    image: Image, grid: Grid, interpolation: str = "linear", default_value: float = 0
) -> Image:
    """``image`` sampled at the world points of ``grid`` (identity transform).

    ``label`` is nearest neighbour; ``label-gaussian`` is ITK's label-aware Gaussian interpolator (smoother
    label borders, still integer labels). Linear/B-spline output of an integer image is float32; other
    modes keep the pixel type. Points outside the image get ``default_value``.
    """
    import SimpleITK as sitk

    return _resample(
        image, grid, sitk.Transform(grid.ndim, sitk.sitkIdentity), interpolation, default_value
    )


def warp_image(
    moving: Image, field: DisplacementField, interpolation: str = "linear", default_value: float = 0
) -> Image:
    """``moving(x + u(x))`` for every world point ``x`` of the field's grid (the fixed grid).

    Moving and fixed grids may differ; everything happens in world LPS mm through
    ``sitk.DisplacementFieldTransform``. The field must map fixed to moving.
    """
    import SimpleITK as sitk

    from medfeat.io.sitk_bridge import field_to_sitk

    if field.mapping != "fixed_to_moving":
        raise GeometryError(
            f"Warping needs a fixed_to_moving field (x -> x + u(x)), got a {field.mapping} field.",
            remedy="Invert the field first, or use the field of the opposite registration direction.",
        )
    if moving.grid.ndim != field.grid.ndim:
        raise GeometryError(
            f"The moving image is {moving.grid.ndim}D ({moving.grid.describe()}) but the field is "
            f"{field.grid.ndim}D ({field.grid.describe()}).",
            remedy="Use a field computed for this pair of images.",
        )
    transform = sitk.DisplacementFieldTransform(field_to_sitk(field.numpy(), field.grid))
    return _resample(moving, field.grid, transform, interpolation, default_value)
