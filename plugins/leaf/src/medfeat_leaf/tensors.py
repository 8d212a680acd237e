"""Samples -> fixed-size training tensors, and predictions back onto the input grid."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from medfeat.api import Image, rgb01


def image_tensor(image: Image, size_px: int) -> torch.Tensor:
    """``[3, S, S]`` in [0, 1] (bilinear, antialiased)."""
    x = rgb01(image)[None]
    return F.interpolate(
        x, size=(size_px, size_px), mode="bilinear", antialias=True, align_corners=False
    )[0]


def mask_tensor(labels: Image, size_px: int) -> torch.Tensor:
    """``[1, S, S]`` binary (any non-zero label is foreground), nearest-neighbour."""
    m = torch.from_numpy((labels.numpy() > 0).astype(np.float32))[None, None]
    return F.interpolate(m, size=(size_px, size_px), mode="nearest")[0]


def to_input_grid(mask: torch.Tensor, image: Image) -> Image:
    """A ``[1, S, S]`` prediction resized (nearest) onto ``image``'s grid, as a uint8 label map."""
    out = F.interpolate(mask[None].float(), size=image.grid.shape, mode="nearest")[0, 0]
    return Image(out.to(torch.uint8).numpy(), image.grid, {"name": f"{image.name} (LEAF labels)"})
