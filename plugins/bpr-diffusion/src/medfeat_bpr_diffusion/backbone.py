"""``bpr-diffusion`` backbone: frozen DDPM U-Net features at a few noise levels, over sliding windows.

For each timestep t the whole canonical volume is noised once with a fixed-seed noise field (so
overlapping windows see the same x_t), the U-Net runs window by window, and its decoder activations
are averaged where windows overlap. Levels are returned finest first, each with its own grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medfeat.api import CheckpointError, ConfigError, FeatureLevel, FeatureMap, Image
from medfeat_bpr_diffusion.checkpoints import SOURCE
from medfeat_bpr_diffusion.config import BackboneConfig, PretrainConfig
from medfeat_bpr_diffusion.coordinates import build_provider, coordinates_on_grid
from medfeat_bpr_diffusion.networks import DiffusionUNet3d
from medfeat_bpr_diffusion.preprocess import preprocess
from medfeat_bpr_diffusion.pretrain import build_from_checkpoint, make_scheduler
from medfeat_bpr_diffusion.tiling import sliding_average


class BPRDiffusionBackbone:
    """Image -> multi-level, multi-timestep features of a frozen (pretrained or random) DDPM U-Net."""

    def __init__(self, config: BackboneConfig, context: Any) -> None:
        self.config, self.context, self.device = config, context, context.device
        self.model: DiffusionUNet3d | None = None
        if config.checkpoint is not None:
            self.model, state = build_from_checkpoint(config.checkpoint, config.weights)
            self.train_config = PretrainConfig.model_validate(state["config"])
        elif config.random_init:
            self.train_config = PretrainConfig(
                preprocess=config.preprocess,
                coordinates=config.coordinates,
                unet=config.unet,
                diffusion=config.diffusion,
                patch_size_vox=config.patch_size_vox or PretrainConfig().patch_size_vox,
            )
            # the U-Net is built (seeded) at the first image; its features are not a result
            context.note_random_weights(
                f"bpr-diffusion backbone DiffusionUNet3d (seed {context.seed})"
            )
        else:
            raise CheckpointError(
                "The bpr-diffusion backbone needs `checkpoint:` (a bpr-ddpm checkpoint).",
                remedy=f"{SOURCE} For a random-weight baseline set `random_init: true` instead.",
            )
        tc = self.train_config
        self.provider = build_provider(tc.coordinates, context)
        self.window = tuple(config.patch_size_vox or tc.patch_size_vox)
        self.scheduler = make_scheduler(tc.diffusion)
        levels = len(tc.unet.channel_mults)
        bad = [lv for lv in config.feature_levels if not 0 <= lv < levels]
        if bad:
            raise ConfigError(
                f"feature_levels {bad} do not exist; the U-Net has levels 0..{levels - 1}.",
                key_path="backbone.feature_levels",
            )
        bad_t = [t for t in config.timesteps if not 0 <= t < tc.diffusion.num_train_timesteps]
        if bad_t:
            raise ConfigError(
                f"timesteps {bad_t} are outside 0..{tc.diffusion.num_train_timesteps - 1}.",
                key_path="backbone.timesteps",
            )
        self.multiple_of = 2 ** (levels - 1)
        if any(w % self.multiple_of for w in self.window):
            raise ConfigError(
                f"patch_size_vox {self.window} must be divisible by {self.multiple_of}.",
                key_path="backbone.patch_size_vox",
            )

    def _network(self, coord_channels: int) -> DiffusionUNet3d:
        if self.model is None:
            torch.manual_seed(self.context.seed)
            self.model = DiffusionUNet3d(self.train_config.unet, coord_channels, self.window)
        if self.model.coord_channels != coord_channels:
            raise CheckpointError(
                f"The checkpoint's U-Net expects {self.model.coord_channels} coordinate channels, "
                f"but the coordinate provider gives {coord_channels}.",
                remedy="Use the coordinate provider the model was pretrained with.",
            )
        return self.model.to(self.device).eval()

    @torch.no_grad()
    def extract(self, image: Image) -> FeatureMap:
        c = self.config
        pre = preprocess(image, self.train_config.preprocess, self.multiple_of, self.window)
        coords = coordinates_on_grid(self.provider, image, pre.grid)
        model = self._network(int(coords.shape[0]))
        x0 = 2.0 * torch.from_numpy(pre.numpy())[None] - 1.0
        shape = pre.grid.shape
        strides = [2**lv for lv in c.feature_levels]
        chans = [model.channels[lv] for lv in c.feature_levels]
        per_t = []
        for t in c.timesteps:
            gen = torch.Generator().manual_seed(
                int(np.random.default_rng([c.noise_seed, t]).integers(2**62))
            )
            noise = torch.randn(x0.shape, generator=gen)
            ab = float(self.scheduler.alphas_cumprod[t])
            x_t = (ab**0.5) * x0 + ((1 - ab) ** 0.5) * noise
            t_vec = torch.tensor([t], device=self.device)

            def predict(sl: tuple[slice, ...], x_t=x_t, t_vec=t_vec) -> list[torch.Tensor]:
                win = (slice(None), *sl)
                xt = x_t[win][None].to(self.device)
                cw = coords[win][None].to(self.device)
                with torch.inference_mode():  # merged into ordinary tensors by the tiling
                    return [f[0] for f in model.features(xt, cw, t_vec, c.feature_levels)]

            per_t.append(
                sliding_average(
                    shape,
                    self.window,
                    c.overlap,
                    strides,
                    chans,
                    predict,
                    self.multiple_of,
                    c.stitching,
                )
            )
        levels = []
        for i, (lv, s) in enumerate(zip(c.feature_levels, strides, strict=True)):
            grid = pre.grid.with_shape_and_spacing(
                tuple(n // s for n in shape), tuple(sp * s for sp in pre.grid.spacing)
            )
            data = torch.cat([feats[i] for feats in per_t], 0)
            levels.append(
                FeatureLevel(data, grid, f"decoder{lv}-t{'-'.join(map(str, c.timesteps))}")
            )
        return FeatureMap(levels, source=image)

    def estimate_memory_bytes(self, image: Image) -> int:
        from medfeat_bpr_diffusion.preprocess import canonical_grid

        grid = canonical_grid(image, self.train_config.preprocess, self.multiple_of, self.window)
        chans = [
            self.train_config.unet.base_channels * m for m in self.train_config.unet.channel_mults
        ]
        per_voxel = sum(chans[lv] / 8**lv for lv in self.config.feature_levels)
        return int(4 * grid.num_voxels * (2 * per_voxel * len(self.config.timesteps) + 8))

    memory_remedy = (
        "Use coarser preprocess.spacing_mm, fewer feature_levels (drop 0), or fewer timesteps."
    )


def make_backbone(config: BackboneConfig, context: Any) -> BPRDiffusionBackbone:
    return BPRDiffusionBackbone(config, context)
