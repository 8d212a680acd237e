"""2D images for 2D networks (ViTs, photographic backbones): RGB tensors in [0, 1].

Geometry stays with the :class:`~medfeat.geometry.Image`; the token grid of a network that sees the
image resized to ``n x m`` tokens is ``image.grid.resized((n, m))`` (same physical box).
"""

from __future__ import annotations

import torch

from medfeat.errors import DataError
from medfeat.geometry import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def rgb01(image: Image) -> torch.Tensor:
    """A 2D image with 1 or 3 channels (uint8, [0, 1] or any range) as ``[3, H, W]`` float in [0, 1].

    uint8 is divided by 255; other images outside [0, 1] are min-max scaled; grey is repeated.
    """
    if image.grid.ndim != 2:
        raise DataError(
            f"{image.name}: a 2D network needs a 2D image, got grid shape {image.grid.shape}.",
            remedy="Give 2D images (or slices) to 2D backbones; 3D volumes go to a slice backbone "
            "such as dinov3-slices.",
        )
    raw = image.data
    x = image.tensor(dtype=torch.float32)
    if str(getattr(raw, "dtype", "")).endswith("uint8"):
        x = x / 255.0
    x = x[None] if x.ndim == 2 else x
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    if x.shape[0] != 3:
        raise DataError(
            f"{image.name}: expected 1 or 3 channels, got {x.shape[0]}.",
            remedy="Give a grey or RGB image.",
        )
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > 1.0 or lo < 0.0 else x


def imagenet_normalise(rgb: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` in [0, 1] -> ImageNet-normalised (the DINO family's input)."""
    mean = torch.tensor(IMAGENET_MEAN, device=rgb.device, dtype=rgb.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=rgb.device, dtype=rgb.dtype).view(1, 3, 1, 1)
    return (rgb - mean) / std
