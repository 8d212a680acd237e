"""Automatic masks derived from image intensities alone (no weights, no atlas)."""

from __future__ import annotations

import numpy as np

from medfeat.geometry import Image


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values`` (maximises the between-class variance)."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centres) - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    return float(centres[int(np.argmax(w0 * w1 * (m0 - m1) ** 2))])


def body_mask(image: Image, threshold: float | None = None) -> np.ndarray:
    """The largest bright connected component, holes filled slice by slice along numpy axis 0."""
    from scipy import ndimage

    arr = image.numpy()
    t = otsu_threshold(arr) if threshold is None else threshold
    bright = arr > t
    labels, n = ndimage.label(bright)
    if n == 0:
        return np.ones(arr.shape, bool)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]  # voxels per component
    body = labels == int(np.argmax(sizes)) + 1
    return np.stack([ndimage.binary_fill_holes(s) for s in body])


def lung_mask(image: Image, threshold: float | None = None, dilation_vox: int = 2) -> np.ndarray:
    """Dark voxels enclosed by the body (the lungs on chest CT), vessels filled in, dilated.

    ``threshold`` separates air/lung from tissue in the image's own units; ``None`` uses Otsu.
    """
    from scipy import ndimage

    arr = image.numpy()
    t = otsu_threshold(arr) if threshold is None else threshold
    body = body_mask(image, t)
    lung = ndimage.binary_fill_holes(body & ~(arr > t))
    if dilation_vox > 0:
        lung = ndimage.binary_dilation(lung, iterations=dilation_vox)
    return lung


def auto_mask(image: Image, kind: str, threshold: float | None = None) -> Image:
    """``kind`` in {"lung", "body"} -> a uint8 mask image on ``image``'s grid."""
    mask = lung_mask(image, threshold) if kind == "lung" else body_mask(image, threshold)
    return Image(mask.astype(np.uint8), image.grid, {"name": f"auto {kind} mask of {image.name}"})
