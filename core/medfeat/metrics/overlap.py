"""Label overlap (Dice) and surface distance (HD95) on a shared grid, in millimetres."""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np

from medfeat.errors import GeometryError
from medfeat.geometry import Image


class EmptyLabelWarning(UserWarning):
    """A label is missing from one or both label maps, so a metric is NaN."""


def _same_grid(a: Image, b: Image) -> None:
    if not a.grid.same_as(b.grid):
        raise GeometryError(
            f"Label maps {a.name} ({a.grid.describe()}) and {b.name} ({b.grid.describe()}) are on different "
            "grids; overlap is only defined voxel by voxel on one grid.",
            remedy="Resample one onto the other's grid with medfeat.io.resample_to_grid(..., interpolation='label').",
        )


def dice_per_label(a: Image, b: Image, labels: Iterable[int] | None = None) -> dict[int, float]:
    """Dice of each label (default: every non-zero label in ``a`` or ``b``); NaN when absent from both."""
    _same_grid(a, b)
    x, y = a.numpy(), b.numpy()
    if labels is None:
        labels = sorted((set(np.unique(x).tolist()) | set(np.unique(y).tolist())) - {0})
    out = {}
    for lab in labels:
        ma, mb = x == lab, y == lab
        denom = int(ma.sum()) + int(mb.sum())
        if denom == 0:
            warnings.warn(
                f"Label {lab} is absent from both label maps; its Dice is NaN.",
                EmptyLabelWarning,
                stacklevel=2,
            )
        out[int(lab)] = 2.0 * float(np.logical_and(ma, mb).sum()) / denom if denom else float("nan")
    return out


def mean_dice(scores: dict[int, float]) -> float:
    """Mean over labels, ignoring NaN (labels absent from both maps)."""
    vals = np.array(list(scores.values()), dtype=np.float64)
    return float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")


def _surface(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import binary_erosion

    return mask & ~binary_erosion(mask, border_value=0)


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """The smallest box holding ``mask``, grown by one voxel where the array allows (so that an
    erosion inside the box sees the same zero border as in the whole array)."""
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(i for i in range(mask.ndim) if i != axis)))
        box.append(slice(max(int(hit[0]) - 1, 0), int(hit[-1]) + 2))
    return tuple(box)


def hd95_per_label(a: Image, b: Image, labels: Iterable[int]) -> dict[int, float]:
    """:func:`hd95_mm` of each label; NaN (without a warning) where a label is absent from a map."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyLabelWarning)
        return {int(k): hd95_mm(a, b, int(k)) for k in labels}


def hd95_mm(a: Image, b: Image, label: int = 1, percentile: float = 95.0) -> float:
    """Symmetric 95th-percentile Hausdorff distance (mm) between the surfaces of ``label`` in ``a`` and ``b``.

    Surface voxels are those removed by one binary erosion; distances use the grid spacing
    (``distance_transform_edt(sampling=spacing)``). The result is the larger of the two directed 95th
    percentiles (as MONAI). NaN, with an :class:`EmptyLabelWarning`, when the label is absent from either map.
    """
    from scipy.ndimage import distance_transform_edt

    _same_grid(a, b)
    ma, mb = a.numpy() == label, b.numpy() == label
    if not ma.any() or not mb.any():
        which = " and ".join(n for n, m in ((a.name, ma), (b.name, mb)) if not m.any())
        warnings.warn(
            f"Label {label} is absent from {which}; HD95 is NaN.", EmptyLabelWarning, stacklevel=2
        )
        return float("nan")
    box = _bounding_box(ma | mb)  # exact: every surface voxel lies inside it
    sa, sb = _surface(ma[box]), _surface(mb[box])
    sampling = a.grid.spacing_array_order
    d_ab = distance_transform_edt(~sb, sampling=sampling)[sa]
    d_ba = distance_transform_edt(~sa, sampling=sampling)[sb]
    return float(max(np.percentile(d_ab, percentile), np.percentile(d_ba, percentile)))
