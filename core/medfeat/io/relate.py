"""Can two images be related in physical space at all? A cheap check before registration."""

from __future__ import annotations

import numpy as np

from medfeat.errors import GeometryError
from medfeat.geometry import Grid, Image


def edge_box(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """World-axis-aligned box (min, max) around the voxel edges (centres +- half a voxel)."""
    corners = np.array(np.meshgrid(*[[-0.5, s - 0.5] for s in grid.size_ijk], indexing="ij"))
    pts = grid.index_to_world(corners.reshape(grid.ndim, -1).T)
    return pts.min(axis=0), pts.max(axis=0)


def overlap_fraction(a: Grid, b: Grid) -> float:
    """Volume of the intersection of both physical boxes over the volume of the smaller box."""
    (lo_a, hi_a), (lo_b, hi_b) = edge_box(a), edge_box(b)
    inter = np.prod(np.clip(np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b), 0, None))
    return float(inter / min(np.prod(hi_a - lo_a), np.prod(hi_b - lo_b)))


def check_geometry_relatable(fixed: Image, moving: Image, min_overlap: float = 0.0) -> float:
    """Raise :class:`GeometryError` unless both images have the same dimension and their physical boxes
    overlap by more than ``min_overlap`` (fraction of the smaller box); return that fraction."""
    fg, mg = fixed.grid, moving.grid
    if fg.ndim != mg.ndim:
        raise GeometryError(
            f"The fixed image {fixed.name} is {fg.ndim}D ({fg.describe()}) but the moving image "
            f"{moving.name} is {mg.ndim}D ({mg.describe()}).",
            remedy="Register images of the same dimension: extract a slice from the 3D image or stack the 2D one.",
        )
    frac = overlap_fraction(fg, mg)
    if frac <= 0.0 or frac < min_overlap:
        lo_f, hi_f = edge_box(fg)
        lo_m, hi_m = edge_box(mg)
        raise GeometryError(
            f"The fixed image {fixed.name} ({fg.describe()}, world box {np.round(lo_f, 1).tolist()} to "
            f"{np.round(hi_f, 1).tolist()} mm) and the moving image {moving.name} ({mg.describe()}, world box "
            f"{np.round(lo_m, 1).tolist()} to {np.round(hi_m, 1).tolist()} mm) "
            + (
                "do not overlap in physical space."
                if frac <= 0.0
                else f"overlap by only {100 * frac:.1f} % (at least {100 * min_overlap:.1f} % required)."
            ),
            remedy="Add a pre-alignment to the registration pipeline (`prealignment: [{name: "
            "centroids, of: body}]`, optionally followed by `{name: affine}`), or check both "
            "headers' origins if the images should overlap as stored.",
        )
    return frac
