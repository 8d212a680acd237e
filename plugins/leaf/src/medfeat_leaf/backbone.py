"""2D backbones (the distillation teachers): a weight-free patch descriptor, DINOv2 (transformers),
and the adapter that takes patch tokens from any registered 2D backbone."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from medfeat.api import (
    DataError,
    FeatureLevel,
    FeatureMap,
    Grid,
    Image,
    imagenet_normalise,
    rgb01,
)


def patch_grid(grid: Grid, patch: float, shape: tuple[int, int]) -> Grid:
    """Grid of ``patch``-pixel tokens: token (i, j) sits at the centre of its pixel block."""
    centre = np.array([[(patch - 1) / 2, (patch - 1) / 2]])
    origin = grid.array_index_to_world(centre)[0]
    spacing = tuple(s * patch for s in grid.spacing)
    return Grid(tuple(shape), spacing, tuple(float(o) for o in origin), grid.direction)


class PatchDescriptor2D:
    """Weight-free token descriptor: per patch, soft gradient-orientation histograms at several
    pooling scales plus colour mean/std, L2-normalised. Deterministic, no parameters."""

    def __init__(self, patch_size_px: int = 16, orientation_bins: int = 8, scales=(1, 2)) -> None:
        self.patch = patch_size_px
        self.bins = orientation_bins
        self.scales = tuple(scales)

    @property
    def dim(self) -> int:
        return self.bins * len(self.scales) + 6

    def tokens(self, rgb: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> ``[B, D, H // p, W // p]``."""
        gray = rgb.mean(dim=1, keepdim=True)
        kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=rgb.dtype) / 8
        k = torch.stack([kx, kx.T])[:, None]
        g = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), k)
        mag = g.norm(dim=1, keepdim=True)
        angle = torch.atan2(g[:, 1:2], g[:, 0:1]) % math.pi  # unsigned orientation
        centres = torch.arange(self.bins, dtype=rgb.dtype) * math.pi / self.bins
        diff = (angle - centres.view(1, -1, 1, 1)).abs()
        diff = torch.minimum(diff, math.pi - diff)
        weight = (1 - diff * self.bins / math.pi).clamp(min=0) * mag
        p = self.patch
        h, w = rgb.shape[-2] // p, rgb.shape[-1] // p
        hist = F.avg_pool2d(weight[..., : h * p, : w * p], p)
        parts = []
        for s in self.scales:
            pooled = F.avg_pool2d(hist, 2 * s - 1, stride=1, padding=s - 1, count_include_pad=False)
            parts.append(F.normalize(pooled, dim=1, eps=1e-6))
        mean = F.avg_pool2d(rgb[..., : h * p, : w * p], p)
        std = (F.avg_pool2d(rgb[..., : h * p, : w * p] ** 2, p) - mean**2).clamp(min=0).sqrt()
        parts += [mean - 0.5, std]
        return F.normalize(torch.cat(parts, dim=1), dim=1)

    def extract(self, image: Image) -> FeatureMap:
        rgb = rgb01(image)[None]
        tok = self.tokens(rgb)[0]
        grid = patch_grid(image.grid, self.patch, tuple(tok.shape[-2:]))
        return FeatureMap([FeatureLevel(tok, grid, "patch-descriptor")], source=image)


class Dinov2Teacher:
    """DINOv2 (with registers) patch tokens from a local transformers folder; nothing downloaded."""

    def __init__(self, model_dir: Path, image_size_px: int = 224, device: str = "cpu") -> None:
        from medfeat_leaf.checkpoints import load_transformers_folder

        self.model = load_transformers_folder(
            Path(model_dir),
            "DINOv2 teacher",
            remedy="Download facebook/dinov2-with-registers-base from the Hugging Face hub "
            "yourself (e.g. `hf download` on a connected machine) and give the complete local "
            "folder (config.json and model.safetensors).",
        )
        self.model.requires_grad_(False).to(device)
        self.device = device
        self.size = image_size_px
        self.patch = int(self.model.config.patch_size)
        self.skip = 1 + int(getattr(self.model.config, "num_register_tokens", 0))

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def tokens(self, rgb: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> ``[B, D, size // 14, size // 14]`` (ImageNet-normalised).

        The ViT runs in inference mode; the tokens returned are ordinary tensors (a copy)."""
        x = F.interpolate(rgb, size=(self.size, self.size), mode="bicubic", align_corners=False)
        x = imagenet_normalise(x).to(self.device)
        with torch.inference_mode():
            hidden = self.model(pixel_values=x).last_hidden_state
        n = self.size // self.patch
        tokens = hidden[:, self.skip :].transpose(1, 2).float().cpu()
        return tokens.reshape(x.shape[0], -1, n, n).clone()

    def extract(self, image: Image) -> FeatureMap:
        tok = self.tokens(rgb01(image)[None])[0]
        # tokens of the resized image: each covers a block of (h / n, w / n) original pixels
        grid = image.grid.resized(tuple(tok.shape[-2:]))
        return FeatureMap([FeatureLevel(tok, grid, "dinov2")], source=image)


def teacher_tokens_batched(
    backbone, rgb01: torch.Tensor, grid_hw: tuple[int, int], batch_images: int
) -> torch.Tensor:
    """:func:`teacher_tokens` of every image of ``[N, 3, H, W]``: ``[N, h * w, D]``.

    A backbone with a batched ``tokens`` method encodes ``batch_images`` images per forward pass
    (the same tokens as one at a time, to rounding); any other backbone goes image by image.
    """
    if not hasattr(backbone, "tokens"):
        return torch.stack([teacher_tokens(backbone, x, grid_hw) for x in rgb01])
    out = []
    for start in range(0, len(rgb01), batch_images):
        feats = backbone.tokens(rgb01[start : start + batch_images]).float()
        feats = F.interpolate(feats, size=grid_hw, mode="bilinear", align_corners=False)
        out.append(feats.flatten(2).transpose(1, 2))
    return torch.cat(out).contiguous()


def teacher_tokens(backbone, rgb01: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Patch tokens of any 2D backbone, resized to the student's token grid: ``[N, D]``.

    Backbones with a batched ``tokens`` method use it; any other registered backbone goes through
    ``extract(Image)`` (its first level).
    """
    if hasattr(backbone, "tokens"):
        feats = backbone.tokens(rgb01[None])[0]
    else:
        image = Image(rgb01, Grid.from_shape(tuple(rgb01.shape[-2:])), {"name": "teacher input"})
        try:
            feats = backbone.extract(image).levels[0].data.float()
        except DataError as exc:  # e.g. a slice backbone that only takes 3D volumes
            raise DataError(
                f"The distillation teacher cannot encode a 2D RGB image: {exc.message}",
                remedy="Use a 2D backbone as LEAF's teacher: patch-descriptor-2d, "
                "dinov2-registers-2d, or dinov3-2d from medfeat-dinov3 (dinov3-slices is for "
                "3D volumes).",
            ) from None
        if feats.ndim != 3:
            raise DataError(
                f"the teacher backbone returned features of shape {tuple(feats.shape)}, not [C, h, w].",
                remedy="Use a 2D backbone as the distillation teacher.",
            )
    feats = F.interpolate(feats[None].float(), size=grid_hw, mode="bilinear", align_corners=False)[
        0
    ]
    return feats.flatten(1).T.contiguous()
