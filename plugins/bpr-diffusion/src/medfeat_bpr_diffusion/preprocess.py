"""vox2vec-style preprocessing: canonical orientation, target spacing, body crop, HU window."""

from __future__ import annotations

import numpy as np

from medfeat.api import DataError, Grid, Image
from medfeat_bpr_diffusion.config import PreprocessConfig


def body_bbox_world(image: Image, threshold_hu: float) -> tuple[np.ndarray, np.ndarray]:
    """World (LPS mm) bounding box of the voxels above ``threshold_hu`` (whole image if none)."""
    arr = image.numpy()
    if arr.ndim != 3:
        raise DataError(f"{image.name} is not a 3D scalar image (shape {arr.shape}).")
    body = arr > threshold_hu
    if not body.any():
        return image.grid.world_extent()
    idx = [np.where(body.any(axis=tuple(a for a in range(3) if a != ax)))[0] for ax in range(3)]
    lo_hi = np.array([[i[0], i[-1]] for i in idx], dtype=np.float64)  # numpy order
    corners = np.array(np.meshgrid(*lo_hi, indexing="ij")).reshape(3, -1).T
    pts = image.grid.array_index_to_world(corners)
    return pts.min(axis=0), pts.max(axis=0)


def canonical_grid(
    image: Image,
    config: PreprocessConfig,
    multiple_of: int = 1,
    min_shape_vox: tuple[int, ...] | None = None,
) -> Grid:
    """Identity-direction (LPS) grid at ``config.spacing_mm`` over the body (or whole image).

    The shape is rounded up to a multiple of ``multiple_of`` so that every U-Net level has an
    integer size, and grown symmetrically to at least ``min_shape_vox`` (numpy order).
    """
    if config.crop_to_body:
        lo, hi = body_bbox_world(image, config.body_threshold_hu)
    else:
        lo, hi = image.grid.world_extent()
    lo, hi = lo - config.margin_mm, hi + config.margin_mm
    spacing = np.asarray(config.spacing_mm, dtype=np.float64)
    size_ijk = np.maximum(np.ceil((hi - lo) / spacing).astype(int) + 1, 1)
    if min_shape_vox is not None:
        need = np.maximum(np.asarray(min_shape_vox[::-1]), size_ijk)
        lo = lo - (need - size_ijk) * spacing / 2.0
        size_ijk = need
    padded = (np.ceil(size_ijk / multiple_of) * multiple_of).astype(int)
    lo = lo - (padded - size_ijk) * spacing / 2.0
    size_ijk = padded
    return Grid(tuple(int(s) for s in size_ijk[::-1]), tuple(spacing), tuple(lo), np.eye(3))


def window(hu: np.ndarray, window_hu: tuple[float, float]) -> np.ndarray:
    """HU -> [0, 1], clipped."""
    lo, hi = window_hu
    return np.clip((hu - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def preprocess(
    image: Image,
    config: PreprocessConfig,
    multiple_of: int = 1,
    min_shape_vox: tuple[int, ...] | None = None,
) -> Image:
    """The image resampled (linear) to its canonical grid and windowed to [0, 1]."""
    from medfeat.api import resample_to_grid

    image.check_finite()
    grid = canonical_grid(image, config, multiple_of, min_shape_vox)
    hu = resample_to_grid(image, grid, "linear", default_value=config.background_hu)
    return Image(window(hu.numpy().astype(np.float32), config.window_hu), grid, dict(image.meta))
