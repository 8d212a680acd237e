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

    memory_remedy = (
        "Use encoder: streaming (if you set encoder: monai), then set encoder_recompute: true "
        "(one full-resolution activation instead of two, about 4 GiB less at 256^3, a slower "
        "encoder) and lower encoder_slab_mib (smaller slabs: less memory, a little slower), or "
        "crop the image to the region of interest; with the defaults a 256^3 volume needs about "
        "10 GiB, with encoder_recompute about 6 GiB."
    )

    def __init__(self, config: MaisiDiftConfig, device: str = "cpu", seed: int = 0) -> None:
        from medfeat_maisi_dift.networks import SPECS, build_autoencoder, build_unet

        self.config, self.device, self.seed = config, torch.device(device), seed
        ae_spec, unet_spec = SPECS[config.architecture]
        self.ae_spec, self.unet_spec = ae_spec, unet_spec
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # reproducible random weights; checkpoints overwrite them
            self.autoencoder = build_autoencoder(ae_spec, num_splits=config.autoencoder_num_splits)
            self.unet = build_unet(unet_spec)
        if config.unet_attention == "fused":
            use_fused_attention(self.unet)
        if config.random_weights:  # the factory notes it in the run's RunContext
            self.scale_factor = config.random_scale_factor
        else:
            from medfeat_maisi_dift.checkpoints import load_autoencoder_weights, load_unet_weights

            load_autoencoder_weights(self.autoencoder, config.autoencoder_checkpoint)
            self.scale_factor = load_unet_weights(self.unet, config.unet_checkpoint)
        self.autoencoder.to(self.device)
        self.unet.to(self.device)
        self.noise_seed = seed if config.noise_seed is None else config.noise_seed
        self._stream: torch.Generator | None = None
        self._extractions = 0

    def estimate_memory_bytes(self, image: Image) -> int:
        """Peak bytes: weights plus the autoencoder's full-resolution activations (float32).

        ``n`` voxels of the resized volume, ``c`` channels at full resolution (64): the streaming
        encoder holds two activations (``2 * 4 * n * c``; one with ``encoder_recompute``) plus
        one slab; MONAI's forward holds
        four with splits (measured: 128^3 and 96^3 extrapolate to 17 GiB at 256^3) and about
        eight without. Libraries add about 1.5 GiB, the U-Net's activations well under 1 GiB up
        to 256^3 with fused attention.
        """
        from medfeat_maisi_dift.preprocess import round_half_even_multiple

        m = self.config.size_multiple_vox
        n = 1
        for d in image.grid.shape:
            n *= round_half_even_multiple(d, m)
        weights = 4 * sum(
            p.numel() for mod in (self.autoencoder, self.unet) for p in mod.parameters()
        )
        full = 4 * n * self.ae_spec.num_channels[0]
        if self.config.encoder == "streaming":
            held = 1 if self.config.encoder_recompute else 2
            act = held * full + 4 * self.config.encoder_slab_mib * 2**20
        else:
            act = full * (4 if self.config.autoencoder_num_splits > 1 else 8)
        libraries = 2**29  # torch, MONAI and friends (measured 0.54 GiB before any network)
        return int(weights + act + n * 4 * 4 + libraries)

    def next_generator(self) -> torch.Generator:
        """The noise generator of the next extraction (see the ``noise`` option)."""
        if self.config.noise == "per-image":
            return torch.Generator().manual_seed(self.noise_seed)
        if self._extractions % 2 == 0 or self._stream is None:
            self._stream = torch.Generator().manual_seed(self.noise_seed)
        self._extractions += 1
        return self._stream

    def reset_noise(self) -> None:
        """Start a new pair: the next extraction is image A of the reference's stream."""
        self._stream, self._extractions = None, 0

    def extract_pair(self, image_a: Image, image_b: Image) -> tuple[FeatureMap, FeatureMap]:
        """Features of A then B, with the reference's noise for that pair (noise 'pair-stream')."""
        self.reset_noise()
        return self.extract(image_a), self.extract(image_b)

    def spacing_tensor(self, image: Image, ras_grid, resized_grid) -> torch.Tensor:
        """The U-Net's spacing input ``[1, 3]`` (mm x 100) as the options say."""
        from medfeat_maisi_dift.preprocess import ras_axis_of_file_axes, spacing_condition

        c = self.config
        ras = (ras_grid if c.spacing_input == "original" else resized_grid).spacing
        if c.spacing_axis_order == "file":
            spacing = tuple(ras[a] for a in ras_axis_of_file_axes(image.grid))
        else:
            spacing = tuple(ras)
        return spacing_condition(spacing, float16=c.spacing_float16)

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
        spacing = self.spacing_tensor(image, ras_grid, net_in.grid)
        gen = self.next_generator()
        encode = None
        if c.encoder == "streaming":
            from medfeat_maisi_dift.encoder_slabs import encode_streaming

            slab = c.encoder_slab_mib * 2**20

            def encode(x: torch.Tensor):
                return encode_streaming(
                    self.autoencoder, x, slab_bytes=slab, recompute=c.encoder_recompute
                )

        with torch.inference_mode(), self._autocast():
            x, net_in.tensor = net_in.tensor, None  # the encoder owns the only reference
            z0 = encode_latent(
                self.autoencoder,
                x,
                scale_factor=self.scale_factor,
                posterior=c.posterior,
                generator=gen,
                encode=encode,
            )
            del x
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
            del z0
        levels = []
        for lvl in c.levels:
            data = feats.pop(lvl)
            if c.normalise_levels:
                data = data / data.norm(dim=0, keepdim=True).clamp_min(1e-12)
            grid = level_grid(net_in.grid, tuple(data.shape[1:]))
            levels.append(FeatureLevel(to_numpy_order(data), grid, f"up_block{lvl}"))
            del data
        return FeatureMap(levels, source=image)

    def _autocast(self):
        import contextlib

        if self.device.type == "cuda" and self.config.autocast:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()


def use_fused_attention(unet: torch.nn.Module) -> int:
    """Switch MONAI's attention blocks to ``F.scaled_dot_product_attention`` (any device).

    MONAI only allows its ``use_flash_attention`` flag with CUDA at construction; the fused
    kernel also exists on CPU, never materialises the ``tokens x tokens`` matrix (about 1 GiB at
    the 1/16 level of a 256^3 input) and gives the same result up to rounding. Returns the
    number of attention blocks switched.
    """
    from monai.networks.blocks.selfattention import SABlock

    blocks = [m for m in unet.modules() if isinstance(m, SABlock)]
    for m in blocks:
        m.use_flash_attention = True
    return len(blocks)


def make_maisi_dift(config: MaisiDiftConfig, context) -> MaisiDiftBackbone:
    """The ``maisi-dift`` backbone on the run's device; random weights are recorded in ``context``."""
    if config.random_weights:
        context.note_random_weights(
            f"maisi-dift {config.architecture} networks (seed {context.seed})"
        )
    return MaisiDiftBackbone(config, context.device, context.seed)
