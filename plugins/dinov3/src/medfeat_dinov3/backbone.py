"""The plugin's backbones: frozen 2D ViTs on the slices of a 3D image, and on 2D images.

* ``dinov3-slices`` / ``dinov2-slices``: :class:`SliceBackbone`, the ViT run over the slices of one
  plane of a volume, its tokens a 3D feature map with geometry;
* ``dinov3-2d``: :class:`ImageBackbone2D`, patch tokens of a resized RGB image with geometry, and a
  batched ``tokens`` method that 2D consumers such as LEAF's distillation use directly.
"""

from __future__ import annotations

import contextlib
import json

import torch
import torch.nn.functional as F

from medfeat.api import (
    ConfigError,
    DataError,
    FeatureLevel,
    FeatureMap,
    Image,
    imagenet_normalise,
    rgb01,
)
from medfeat_dinov3.checkpoints import load_dinov2, load_dinov3
from medfeat_dinov3.config import (
    Dinov2SlicesConfig,
    Dinov3ImageConfig,
    Dinov3SlicesConfig,
    Dinov3WeightsConfig,
    SliceEncodingConfig,
)
from medfeat_dinov3.networks import SliceModel
from medfeat_dinov3.slicing import (
    fill_between,
    normalise_intensity,
    patch_grid_shape,
    slice_plan,
    slice_view,
    token_grid,
)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Reduced precision for the ViT forward, or ``None`` for float32 (the CPU default)."""
    if precision == "float32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bfloat16" else torch.float16


class SliceBackbone:
    """DINOv3 / DINOv2 patch tokens of every slice of one plane, as a 3D feature map.

    Every ``slice_stride_vox``-th slice from the first non-uniform one (and the last non-uniform
    one) is encoded; uniform slices get zero features; the others are linearly interpolated. The level's grid is the token grid in world space.
    """

    memory_remedy = "Lower patch_grid/raise patch_spacing_mm, or follow the backbone with joint-pca; crop the image."

    def __init__(
        self, config: SliceEncodingConfig, model: SliceModel, device: str = "cpu", name: str = ""
    ) -> None:
        self.config, self.model, self.name = config, model, name
        self.device = torch.device(device)
        self.model.module.to(self.device).eval().requires_grad_(False)
        self.last_stats: dict[str, float | int | str] = {}
        self._weights_digest: str | None = None
        self._hit = False

    def _geometry(self, image: Image):
        if image.grid.ndim != 3 or image.num_channels != 1:
            raise DataError(
                f"{self.name}-slices needs a single-channel 3D image; {image.name} has grid "
                f"{image.grid.shape} and {image.num_channels} channels.",
                remedy="Give a 3D scalar image (NIfTI/NRRD/MHA).",
            )
        view = slice_view(image.grid, self.config.slice_axis)
        patches = patch_grid_shape(view.grid, self.config.patch_spacing_mm, self.config.patch_grid)
        if patches[0] * patches[1] > self.config.max_tokens_per_slice:
            raise ConfigError(
                f"{self.name}-slices: a patch grid of {patches[0]}x{patches[1]} tokens per slice "
                f"exceeds max_tokens_per_slice={self.config.max_tokens_per_slice}.",
                remedy="Raise patch_spacing_mm or set a smaller patch_grid.",
            )
        return view, patches

    def estimate_memory_bytes(self, image: Image) -> int:
        view, (h, w) = self._geometry(image)
        feats = 4 * self.model.hidden_size * view.grid.shape[0] * h * w
        tokens = h * w + self.model.num_prefix_tokens
        forward = 4 * self.config.batch_slices * tokens * self.model.hidden_size * 12
        return int(2 * feats + forward)

    def encode_slices(self, slices: torch.Tensor, patches: tuple[int, int]) -> torch.Tensor:
        """``[n, rows, cols]`` slices in [0, 1] -> ``[n, C, h, w]`` patch tokens (float32)."""
        p = self.model.patch_size
        x = resize_like_reference(slices[:, None].float(), (patches[0] * p, patches[1] * p))
        x = imagenet_normalise(x.expand(-1, 3, -1, -1))
        dtype = autocast_dtype(self.config.precision, self.device)
        ctx = (
            torch.autocast(self.device.type, dtype=dtype)
            if dtype is not None
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), ctx:
            hidden = self.model.module(pixel_values=x).last_hidden_state
        tokens = hidden[:, self.model.num_prefix_tokens :].float()
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, *patches)

    #: options that do not change the tokens (left out of the feature cache key)
    _NOT_IN_KEY = frozenset({"batch_slices", "max_tokens_per_slice", "feature_cache_dir"})

    def _cached_tokens(self, image: Image, anchors: list[int], patches: tuple[int, int]):
        """(cache, key, tokens from the cache or ``None``); cache and key are ``None`` when off."""
        self._hit = False
        folder = getattr(self.config, "feature_cache_dir", None)
        if folder is None:
            return None, None, None
        from medfeat_dinov3.feature_cache import TokenCache, cache_key, weights_digest

        if self._weights_digest is None:  # once per backbone: hashes every weight
            self._weights_digest = weights_digest(self.model.module)
        options = {
            k: getattr(self.config, k)
            for k in SliceEncodingConfig.model_fields
            if k not in self._NOT_IN_KEY
        }
        options = json.loads(json.dumps(options, default=str))
        key = cache_key(image, self._weights_digest, options, self.device)
        cache = TokenCache(folder)
        tokens = cache.load(key, anchors, (self.model.hidden_size, *patches))
        self._hit = tokens is not None
        return cache, key, None if tokens is None else tokens.to(self.device)

    def extract(self, image: Image) -> FeatureMap:
        import time

        view, patches = self._geometry(image)
        volume = view.apply(image.tensor(device=self.device))
        volume, modality = normalise_intensity(volume, self.config)
        ranges = volume.flatten(1).amax(1) - volume.flatten(1).amin(1)
        content = torch.nonzero(ranges > self.config.uniform_tolerance).flatten().tolist()
        if not content:
            raise DataError(
                f"{image.name} has no slice with varying intensity after normalisation.",
                remedy="Check the image and the intensity settings (modality, CT window).",
            )
        # stride counted from the first non-uniform slice: padding slabs are not anchors
        anchors = slice_plan(volume.shape[0], self.config.slice_stride_vox, content[0], content[-1])
        todo = [i for i, s in enumerate(anchors) if ranges[s] > self.config.uniform_tolerance]
        start = time.perf_counter()
        cache, key, tokens = self._cached_tokens(image, anchors, patches)
        if tokens is None:
            tokens = torch.zeros(
                (len(anchors), self.model.hidden_size, *patches), device=self.device
            )
            for b in range(0, len(todo), self.config.batch_slices):
                batch = todo[b : b + self.config.batch_slices]
                tokens[batch] = self.encode_slices(volume[[anchors[i] for i in batch]], patches)
            if cache is not None:
                cache.store(key, anchors, tokens)
        self.last_stats = {
            "encoded_slices": len(todo),
            "slices": int(volume.shape[0]),
            "encode_seconds": time.perf_counter() - start,
            "modality": modality,
            "feature_cache": "off" if cache is None else ("hit" if self._hit else "miss"),
        }
        data = fill_between(tokens, anchors, volume.shape[0])
        level = FeatureLevel(data, token_grid(view.grid, patches), f"{self.name}-tokens")
        return FeatureMap([level], source=image)


def resize_like_reference(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[B, C, H, W]`` resized to ``size`` as DINOv3's reference transform does: bilinear with
    antialiasing (a triangle filter widened by the reduction factor when shrinking), pixel
    centres aligned (``align_corners=False``)."""
    return F.interpolate(
        images, size=tuple(size), mode="bilinear", align_corners=False, antialias=True
    )


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
        x = resize_like_reference(rgb.float(), (size, size))
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


def _note_random_weights(context, component: str, config: Dinov3WeightsConfig | Dinov2SlicesConfig):
    """Record in the run's context that ``component`` runs on a randomly initialised ViT."""
    if config.random_weights:  # config validation refuses random_weights with a checkpoint
        context.note_random_weights(f"{component} {config.model} ViT (seed {config.random_seed})")


def make_dinov3_slices(config: Dinov3SlicesConfig, context) -> SliceBackbone:
    _note_random_weights(context, "dinov3-slices", config)
    return SliceBackbone(config, load_dinov3(config), context.device, name="dinov3")


def make_dinov2_slices(config: Dinov2SlicesConfig, context) -> SliceBackbone:
    _note_random_weights(context, "dinov2-slices", config)
    return SliceBackbone(config, load_dinov2(config), context.device, name="dinov2")


def make_dinov3_2d(config: Dinov3ImageConfig, context) -> ImageBackbone2D:
    _note_random_weights(context, "dinov3-2d", config)
    return ImageBackbone2D(config, load_dinov3(config), context.device, name="dinov3-2d")
