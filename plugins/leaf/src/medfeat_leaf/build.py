"""Assemble a :class:`LeafModel` from its config, loading the pretrained parts when given."""

from __future__ import annotations

from medfeat.api import ConfigError
from medfeat_leaf.config import LeafConfig
from medfeat_leaf.model import LeafModel


def build_leaf(config: LeafConfig) -> LeafModel:
    """ldm-kl-8: VAE (frozen, masks) + its encoder copy (trainable, images) + widened LDM U-Net.

    small: pixel-shuffle mask codec + small random image encoder + small random U-Net.
    """
    from medfeat_leaf import networks as nets

    arch = config.architecture
    spec = nets.unet_spec(arch)
    if arch.preset == "small":
        if config.unet_checkpoint or config.vae_checkpoint:
            raise ConfigError(
                "the small preset trains from scratch and takes no checkpoints.",
                remedy="Remove unet_checkpoint/vae_checkpoint or use preset ldm-kl-8.",
            )
        codec = nets.PixelShuffleMaskCodec(arch.mask_downsample)
        levels = {2: 2, 4: 3, 8: 4}[arch.mask_downsample]
        channels = tuple(arch.encoder_channels or (16, 32, 64, 64)[:levels])
        if len(channels) != levels:
            raise ConfigError(
                f"encoder_channels needs {levels} widths for mask_downsample {arch.mask_downsample}.",
                remedy=f"Give {levels} widths (multiples of 8).",
            )
        encoder = nets.small_image_encoder(channels, codec.latent_channels)
        unet = nets.build_unet(spec, 2 * codec.latent_channels, codec.latent_channels)
        return LeafModel(config, encoder, codec, unet)

    missing = [n for n in ("unet_checkpoint", "vae_checkpoint") if getattr(config, n) is None]
    if missing and not config.from_scratch:
        raise ConfigError(
            f"the ldm-kl-8 preset needs {' and '.join(missing)} (pretrained LDM weights).",
            remedy="Give the local checkpoint paths (see the medfeat-leaf README for sources), set "
            "from_scratch: true for random weights, or use architecture.preset: small.",
        )
    from medfeat_leaf.checkpoints import load_kl_vae, load_ldm_unet

    vae = nets.build_vae()
    if config.vae_checkpoint is not None:
        load_kl_vae(config.vae_checkpoint, vae)
    lat = vae.config.latent_channels
    unet = nets.build_unet(spec, lat, lat)
    if config.unet_checkpoint is not None:
        load_ldm_unet(config.unet_checkpoint, unet, spec)
    nets.widen_conv_in(unet)
    encoder = nets.ImageEncoder.from_vae(vae)
    return LeafModel(config, encoder, nets.VAEMaskCodec(vae), unet)
