"""The working grid of a registration: one isotropic grid in the fixed image's world frame.

Fixed and moving images (the moving one through the pre-alignment), and their masks, are
resampled onto it before any feature is computed, so features do not depend on how the files
store their voxels (axis order, flips, handedness, anisotropic spacing).

A resampled image is not its source file: it carries no ``meta["sha256"]`` (that key is only ever
the SHA-256 of a file's bytes, as provenance records read it). It carries
``meta["content_key"]`` (:data:`CONTENT_KEY`) instead: the source's identity (its file checksum,
or its own content key) followed by a digest of the grid, the affine and the interpolation, so the
same image resampled the same way gets the same key and any other resampling a different one.
A cache of per-image results (such as the run's feature cache) keys on :func:`content_key`, which
falls back to the file checksum for an image read from disk.
"""

from __future__ import annotations

import math

import numpy as np

from medfeat.errors import ConfigError, GeometryError
from medfeat.geometry.grid import Grid
from medfeat.geometry.image import CONTENT_KEY, IDENTITY_KEYS, Image, derived_meta

__all__ = [
    "CONTENT_KEY",
    "IDENTITY_KEYS",
    "check_affine",
    "content_key",
    "default_working_spacing",
    "derived_meta",
    "is_identity",
    "resample_image",
    "working_grid",
]


def content_key(image: Image) -> str | None:
    """What identifies ``image``'s voxels and grid for a cache: ``meta["content_key"]`` when it was
    derived (e.g. by :func:`resample_image`), else the checksum of the file it was read from
    (``meta["sha256"]``); ``None`` for an image made in memory (not cacheable)."""
    return image.meta.get(CONTENT_KEY) or image.meta.get("sha256")


def default_working_spacing(grid: Grid) -> float:
    """The isotropic spacing (mm) with as many voxels as ``grid``: the geometric mean of its
    spacing, rounded to 0.001 mm (2 mm for a 2 mm isotropic image)."""
    return round(float(np.exp(np.mean(np.log(grid.spacing)))), 3)


def working_grid(fixed: Grid, spacing_mm: float | None = None) -> Grid:
    """The fixed grid's box (voxel edges) and direction, sampled at ``spacing_mm`` along every
    axis (default: :func:`default_working_spacing`). Returns ``fixed`` itself when it already
    has that spacing, so an isotropic image is registered on its own voxels."""
    spacing = default_working_spacing(fixed) if spacing_mm is None else float(spacing_mm)
    if not (spacing > 0 and math.isfinite(spacing)):
        raise ConfigError(
            f"working_spacing_mm must be a positive length, got {spacing_mm}.",
            remedy="Set working_spacing_mm to a few mm (e.g. 2), or remove it for the default.",
        )
    if np.allclose(fixed.spacing, spacing, rtol=0, atol=1e-6):
        return fixed
    extent = np.asarray(fixed.size_ijk) * np.asarray(fixed.spacing)
    size = np.maximum(1, np.round(extent / spacing)).astype(int)
    too_small = [n for n in size if n < 4]
    if too_small or int(np.prod(size)) > 2**31 - 1:
        raise ConfigError(
            f"working_spacing_mm = {spacing:g} gives a working grid of "
            f"{'x'.join(map(str, size))} voxels over the fixed image ({fixed.describe()}).",
            remedy="Choose a working_spacing_mm that leaves at least 4 voxels along every axis "
            "and fits in memory (the fixed image's own spacing is a safe start).",
        )
    return fixed.with_shape_and_spacing(tuple(int(n) for n in size[::-1]), (spacing,) * 3)


def is_identity(affine: np.ndarray, atol: float = 1e-9) -> bool:
    """True for the identity 4x4 matrix (up to ``atol``)."""
    return bool(np.allclose(affine, np.eye(len(affine)), rtol=0, atol=atol))


def check_affine(affine, source: str) -> np.ndarray:
    """A finite, invertible homogeneous 4x4 matrix as float64, or a :class:`GeometryError`."""
    a = np.asarray(affine, dtype=np.float64)
    ok = a.shape == (4, 4) and np.all(np.isfinite(a)) and np.allclose(a[3], [0, 0, 0, 1])
    if ok:
        det = float(np.linalg.det(a[:3, :3]))
        ok = det > 1e-3
    if not ok:
        raise GeometryError(
            f"{source} returned {a.tolist()}, which is not an orientation-preserving, "
            "invertible 4x4 world transform.",
            remedy=f"Check the options of {source}, or remove it from `prealignment`.",
        )
    return a


def resample_image(
    image: Image,
    grid: Grid,
    *,
    affine: np.ndarray | None = None,
    nearest: bool = False,
    meta_key: str = "working",
) -> Image:
    """``image`` sampled at the voxels of ``grid`` (float32), looking up each world point ``x``
    at ``affine @ x`` (identity when none). Outside the image the value is the image's minimum
    (its background: air in CT, zero in MR); masks use nearest neighbour and zero outside.

    The image itself is returned when nothing would change. Otherwise the copy carries no file
    checksum (``sha256`` ...); its ``meta["content_key"]`` (see :func:`content_key`) is the
    source's key followed by ``meta_key`` and a digest of the grid, the affine and the
    interpolation, so a resampled image never shares the features of its source file, and
    resampling the same image the same way gives the same key. A source without a checksum or
    content key (made in memory) gives a copy without one.
    """
    import hashlib

    import torch

    from medfeat.geometry.sampling import resample_tensor

    identity = affine is None or is_identity(affine)
    if identity and image.grid.same_as(grid, atol_mm=1e-6):
        return image
    data = image.tensor(dtype=torch.float32)
    data = data[None] if image.num_channels == 1 and data.dim() == grid.ndim else data
    background = 0.0 if nearest else float(data.min())
    out = resample_tensor(
        data - background,
        image.grid,
        grid,
        mode="nearest" if nearest else "linear",
        padding="zeros",
        world_affine=None if identity else affine,
    )
    out = out + background
    out = out[0] if image.num_channels == 1 else out
    source = content_key(image)
    meta = derived_meta(image.meta)
    meta[meta_key] = grid.describe()
    if source is not None:
        how = (
            grid.to_dict(),
            None if identity else np.round(affine, 9).tolist(),
            "nearest" if nearest else "linear",
        )
        digest = hashlib.sha256(repr(how).encode()).hexdigest()[:16]
        meta[CONTENT_KEY] = f"{source}+{meta_key}{digest}"
    return Image(out, grid, meta)
