"""The ``maisi-dift`` backbone: MAISI v1 diffusion features with their world geometry."""

from __future__ import annotations

import torch

from medfeat.api import FeatureLevel, FeatureMap, Image
from medfeat_maisi_dift.config import MaisiDiftConfig


class MaisiDiftBackbone:
    """Image -> up-block features of the MAISI v1 U-Net, each level at its native resolution.

    Level ``l`` carries the grid of its cells over the resized RAS volume, in the file's world
    space, so consumers interpolate at any world point and map back to the native voxel grid.
    """

    memory_remedy = "Raise autoencoder_num_splits, use fewer levels, or crop the image to the region of interest."

    def __init__(self, config: MaisiDiftConfig, device: str = "cpu", seed: int = 0) -> None:
        from medfeat_maisi_dift.networks import SPECS, build_autoencoder, build_unet

        self.config, self.device, self.seed = config, torch.device(device), seed
        ae_spec, unet_spec = SPECS[config.architecture]
        self.ae_spec, self.unet_spec = ae_spec, unet_spec
        cuda = self.device.type == "cuda"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # reproducible random weights; checkpoints overwrite them
            self.autoencoder = build_autoencoder(ae_spec, num_splits=config.autoencoder_num_splits)
            self.unet = build_unet(unet_spec, use_flash_attention=cuda and _has_flash())
        if config.random_weights:  # the factory notes it in the run's RunContext
            self.scale_factor = config.random_scale_factor
        else:
            from medfeat_maisi_dift.checkpoints import load_autoencoder_weights, load_unet_weights

            load_autoencoder_weights(self.autoencoder, config.autoencoder_checkpoint)
            self.scale_factor = load_unet_weights(self.unet, config.unet_checkpoint)
        self.autoencoder.to(self.device)
        self.unet.to(self.device)

    def estimate_memory_bytes(self, image: Image) -> int:
        """Peak bytes: weights plus the autoencoder's full-resolution activations (float32).

        Calibrated on a 128^3 v1 run (4.2 GiB peak RSS with 4 splits, about 1.5 GiB of it
        libraries); activations scale with the resized volume and shrink with more splits.
        """
        from medfeat_maisi_dift.preprocess import round_half_even_multiple

        m = self.config.size_multiple_vox
        n = 1
        for d in image.grid.shape:
            n *= round_half_even_multiple(d, m)
        weights = 4 * sum(
            p.numel() for mod in (self.autoencoder, self.unet) for p in mod.parameters()
        )
        splits = self.config.autoencoder_num_splits
        return int(weights + 4 * n * self.ae_spec.num_channels[0] * (1.5 + 8 / splits))

    def extract(self, image: Image) -> FeatureMap:
        from medfeat_maisi_dift.diffusion import encode_latent, region_tensor, up_block_features
        from medfeat_maisi_dift.preprocess import level_grid, prepare, to_numpy_order

        c = self.config
        if image.grid.ndim != 3 or image.num_channels != 1:
            from medfeat.api import DataError

            raise DataError(
                f"maisi-dift needs a single-channel 3D CT volume; {image.name} has "
                f"{image.num_channels} channel(s) on a {image.grid.ndim}D grid.",
                remedy="Give a 3D CT image (NIfTI/MHA/NRRD, one channel).",
            )
        net_in, ras_grid = prepare(
            image,
            intensity=c.intensity,
            window_hu=(c.window_min_hu, c.window_max_hu),
            size_multiple_vox=c.size_multiple_vox,
            device=self.device,
        )
        spacing_grid = ras_grid if c.spacing_input == "original" else net_in.grid
        spacing = torch.tensor([list(spacing_grid.spacing)], dtype=torch.float32) * 100.0
        gen = torch.Generator().manual_seed(self.seed)
        with torch.inference_mode(), self._autocast():
            z0 = encode_latent(
                self.autoencoder,
                net_in.tensor,
                scale_factor=self.scale_factor,
                posterior=c.posterior,
                generator=gen,
            )
            del net_in.tensor
            feats = up_block_features(
                self.unet,
                z0,
                timestep=c.timestep,
                levels=c.levels,
                top_region=region_tensor(c.top_region),
                bottom_region=region_tensor(c.bottom_region),
                spacing=spacing,
                num_draws=c.num_noise_draws,
                generator=gen,
            )
        levels = []
        for lvl in c.levels:
            data = feats.pop(lvl)
            if c.normalise_levels:
                data = data / data.norm(dim=0, keepdim=True).clamp_min(1e-12)
            grid = level_grid(net_in.grid, tuple(data.shape[1:]))
            levels.append(FeatureLevel(to_numpy_order(data), grid, f"up_block{lvl}"))
        return FeatureMap(levels, source=image)

    def _autocast(self):
        import contextlib

        if self.device.type == "cuda" and self.config.autocast:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()


def _has_flash() -> bool:
    """Whether PyTorch's flash scaled-dot-product attention kernel is available (CUDA only)."""
    try:
        return bool(torch.backends.cuda.is_flash_attention_available())
    except AttributeError:
        return False


def make_maisi_dift(config: MaisiDiftConfig, context) -> MaisiDiftBackbone:
    """The ``maisi-dift`` backbone on the run's device; random weights are recorded in ``context``."""
    if config.random_weights:
        context.note_random_weights(
            f"maisi-dift {config.architecture} networks (seed {context.seed})"
        )
    return MaisiDiftBackbone(config, context.device, context.seed)
