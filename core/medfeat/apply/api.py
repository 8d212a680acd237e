"""``apply_transforms``: warp an image or label map, or map points, with saved transforms."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medfeat.apply.chain import TransformChain, load_chain
from medfeat.apply.grids import output_grid
from medfeat.apply.images import resample_image, resample_labels
from medfeat.errors import ConfigError
from medfeat.geometry import Grid, Image, PointSet

__all__ = ["apply_transforms", "map_points"]


def map_points(points: PointSet, chain: TransformChain) -> PointSet:
    """Push source-space points through the chain (fixed points into the moving image for a
    ``fixed_to_moving`` chain); labels are kept."""
    mapped = chain.transform_points(points.points)
    meta = {
        **points.meta,
        "mapped_by": chain.describe(),
        "space_after": "target of " + chain.mapping,
    }
    return PointSet(mapped, labels=points.labels, meta=meta)


def apply_transforms(
    transforms: TransformChain | Sequence[Any],
    *,
    image: Image | None = None,
    labels: Image | None = None,
    points: PointSet | None = None,
    mapping: str = "fixed_to_moving",
    grid: Grid | None = None,
    reference: Image | Grid | None = None,
    spacing_mm: Sequence[float] | None = None,
    size_ijk: Sequence[int] | None = None,
    origin_mm: Sequence[float] | None = None,
    interpolation: str = "linear",
    label_method: str = "vote",
    default_value: float = 0.0,
    invert_iterations: int = 20,
) -> Image | PointSet:
    """Apply ``transforms`` (in the order applied to a point) to one image, label map or point set.

    ``mapping`` is the way the chain maps points. With ``fixed_to_moving`` (a registration's
    ``field_fixed_to_moving.nii.gz``) an ``image``/``labels`` of the *moving* image is pulled onto the
    *fixed* grid, and ``points`` of the *fixed* image are pushed into the *moving* image; use
    ``moving_to_fixed`` for the reverse. ``transforms`` are paths (medfeat output folders, fields,
    ITK/ANTs/greedy files), :class:`~medfeat.apply.chain.TransformSpec` (to invert one),
    :class:`~medfeat.geometry.DisplacementField` or :class:`~medfeat.io.transform_files.AffineMap`.

    Images go onto ``grid``, else ``reference``'s grid, else the chain's source grid (the fixed
    image's for a medfeat run), with ``spacing_mm``/``size_ijk``/``origin_mm`` replaced if given.
    """
    given = [
        n for n, v in (("image", image), ("labels", labels), ("points", points)) if v is not None
    ]
    if len(given) != 1:
        raise ConfigError(
            f"apply_transforms takes exactly one of image, labels or points; got {len(given)}"
            + (f" ({', '.join(given)})." if given else "."),
            remedy="Call it once per input.",
        )
    chain = (
        transforms
        if isinstance(transforms, TransformChain)
        else load_chain(list(transforms), mapping, invert_iterations)
    )
    if points is not None:
        return map_points(points, chain)
    target = grid or output_grid(chain.source_grid, reference, spacing_mm, size_ijk, origin_mm)
    if image is not None:
        return resample_image(image, chain, target, interpolation, default_value)
    return resample_labels(labels, chain, target, label_method, int(default_value))
