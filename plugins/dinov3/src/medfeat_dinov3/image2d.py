"""DINOv3 on 2D images: the frozen ViT's patch tokens of a resized RGB image, with geometry.

A 2D backbone in medfeat's sense (``extract(Image) -> FeatureMap``), and a batched ``tokens`` method
that 2D consumers such as LEAF's distillation use directly.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from medfeat.api import ConfigError, FeatureLevel, FeatureMap, Image, imagenet_normalise, rgb01
from medfeat_dinov3.backbone import autocast_dtype
from medfeat_dinov3.checkpoints import SliceModel
from medfeat_dinov3.config import Dinov3ImageConfig


class ImageBackbone2D:
    """Patch tokens of a frozen 2D ViT for square-resized RGB images."""

    def __init__(
        self, config: Dinov3ImageConfig, model: SliceModel, device: str = "cpu", name: str = ""
    ) -> None:
        if config.image_size_px % model.patch_size:
            raise ConfigError(
                f"{name}: image_size_px {config.image_size_px} is not a multiple of the patch size "
                f"{model.patch_size}.",
                key_path="backbone.image_size_px",
                remedy=f"Use a multiple of {model.patch_size}, e.g. "
                f"{model.patch_size * max(1, round(config.image_size_px / model.patch_size))}.",
            )
        self.config, self.model, self.name = config, model, name
        self.device = torch.device(device)
        self.model.module.to(self.device).eval().requires_grad_(False)

    @property
    def dim(self) -> int:
        return self.model.hidden_size

    def tokens(self, rgb: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> ``[B, D, n, n]`` with ``n = image_size_px / patch``."""
        size = self.config.image_size_px
        x = F.interpolate(rgb.float(), size=(size, size), mode="bicubic", align_corners=False)
        x = imagenet_normalise(x.clamp(0, 1)).to(self.device)
        dtype = autocast_dtype(self.config.precision, self.device)
        ctx = torch.autocast(self.device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            hidden = self.model.module(pixel_values=x).last_hidden_state
        n = size // self.model.patch_size
        tokens = hidden[:, self.model.num_prefix_tokens :].float()
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, n, n).cpu()

    def extract(self, image: Image) -> FeatureMap:
        tok = self.tokens(rgb01(image)[None])[0]
        grid = image.grid.resized(tuple(tok.shape[-2:]))  # same physical box, one voxel per token
        return FeatureMap([FeatureLevel(tok, grid, f"{self.name}-tokens")], source=image)
