"""Pull images and label maps through a chain onto a grid of the chain's source space."""

from __future__ import annotations

from typing import Any

import numpy as np

from medfeat.apply.chain import TransformChain
from medfeat.errors import ConfigError, DataError, GeometryError
from medfeat.geometry import Grid, Image
from medfeat.geometry.image import derived_meta

__all__ = ["IMAGE_INTERPOLATIONS", "LABEL_METHODS", "resample_image", "resample_labels"]

#: Interpolation of intensity images.
IMAGE_INTERPOLATIONS = ("linear", "bspline", "nearest")
#: Label-aware resampling: ``vote`` resamples each label's indicator linearly and keeps the label
#: with the largest value; ``nearest`` is nearest neighbour; ``gaussian`` is ITK's label Gaussian.
LABEL_METHODS = ("vote", "nearest", "gaussian")
_MAX_VOTE_LABELS = 512


def _check_dims(image: Image, chain: TransformChain, grid: Grid) -> None:
    if image.grid.ndim != chain.ndim or grid.ndim != chain.ndim:
        raise GeometryError(
            f"{image.name} is {image.grid.ndim}D, the output grid {grid.ndim}D and the transforms "
            f"{chain.ndim}D.",
            remedy="Use an image, grid and transforms of the same dimension.",
        )


def _resample(src: Any, grid: Grid, transform: Any, interp: int, default: float, pixel: int) -> Any:
    import SimpleITK as sitk

    from medfeat.io.sitk_bridge import reference_image

    return sitk.Resample(src, reference_image(grid), transform, interp, float(default), pixel)


def resample_image(
    image: Image,
    chain: TransformChain,
    grid: Grid,
    interpolation: str = "linear",
    default_value: float = 0.0,
) -> Image:
    """``image(T(x))`` for every world point ``x`` of ``grid``, ``T`` the chain's point map.

    ``image`` lives in the chain's target space (the moving image for a ``fixed_to_moving`` chain)
    and ``grid`` in its source space. Linear and B-spline output of an integer image is float32;
    nearest keeps the pixel type. Points mapped outside the image get ``default_value``.
    """
    import SimpleITK as sitk

    from medfeat.io.sitk_bridge import image_to_sitk, sitk_to_image

    if interpolation not in IMAGE_INTERPOLATIONS:
        raise ConfigError(
            f"Unknown interpolation {interpolation!r} for images.",
            remedy=f"Use one of {', '.join(IMAGE_INTERPOLATIONS)}; label maps take --labels.",
        )
    _check_dims(image, chain, grid)
    src = image_to_sitk(image)
    if interpolation != "nearest" and not np.issubdtype(image.numpy().dtype, np.floating):
        vector = src.GetNumberOfComponentsPerPixel() > 1
        src = sitk.Cast(src, sitk.sitkVectorFloat32 if vector else sitk.sitkFloat32)
    interp = {
        "linear": sitk.sitkLinear,
        "bspline": sitk.sitkBSpline,
        "nearest": sitk.sitkNearestNeighbor,
    }
    out = _resample(
        src, grid, chain.to_sitk(), interp[interpolation], default_value, src.GetPixelID()
    )
    return sitk_to_image(
        out,
        {
            **derived_meta(image.meta),
            "resampled_with": interpolation,
            "transforms": chain.describe(),
        },
    )


def resample_labels(
    labels: Image,
    chain: TransformChain,
    grid: Grid,
    method: str = "vote",
    default_value: int = 0,
) -> Image:
    """A label map pulled through the chain (see :data:`LABEL_METHODS`), keeping its pixel type."""
    import SimpleITK as sitk

    from medfeat.io.sitk_bridge import image_to_sitk, sitk_to_image

    if method not in LABEL_METHODS:
        raise ConfigError(
            f"Unknown label method {method!r}.", remedy=f"Use one of {', '.join(LABEL_METHODS)}."
        )
    _check_dims(labels, chain, grid)
    arr = labels.numpy()
    if labels.num_channels != 1:
        raise DataError(
            f"{labels.name} has {labels.num_channels} channels; a label map has one.",
            remedy="Pass it as an image (--image) instead.",
        )
    if np.issubdtype(arr.dtype, np.floating) and not np.all(arr == np.round(arr)):
        raise DataError(
            f"{labels.name} holds non-integer values, so it is not a label map.",
            remedy="Pass it as an image (--image) with linear or B-spline interpolation.",
        )
    meta = {
        **derived_meta(labels.meta),
        "resampled_with": f"labels-{method}",
        "transforms": chain.describe(),
    }
    transform = chain.to_sitk()
    if method in ("nearest", "gaussian"):
        interp = sitk.sitkNearestNeighbor if method == "nearest" else sitk.sitkLabelGaussian
        src = image_to_sitk(labels)
        out = _resample(src, grid, transform, interp, default_value, src.GetPixelID())
        return sitk_to_image(out, meta)
    values = np.unique(arr)
    if len(values) > _MAX_VOTE_LABELS:
        raise DataError(
            f"{labels.name} holds {len(values)} distinct values; the vote resamples one image per "
            f"label (at most {_MAX_VOTE_LABELS}).",
            remedy="Use --label-method nearest (or gaussian) for maps with this many labels.",
        )
    best = np.zeros(grid.shape, dtype=np.float32)
    winner = np.full(grid.shape, default_value, dtype=arr.dtype)
    for value in values:
        indicator = Image((arr == value).astype(np.float32), labels.grid)
        out = _resample(
            image_to_sitk(indicator), grid, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32
        )
        vote = sitk.GetArrayFromImage(out)
        better = vote > best
        winner[better] = value
        best[better] = vote[better]
    return Image(winner, grid, meta)
