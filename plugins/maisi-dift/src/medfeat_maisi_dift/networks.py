"""MAISI v1 networks (autoencoder and DDPM diffusion U-Net) built with MONAI's MAISI classes.

The released v1 hyper-parameters are in :data:`AUTOENCODER_V1` and :data:`UNET_V1`; their
``state_dict`` keys and shapes equal the official checkpoint manifests exactly. Tiny variants with
the same structure (fewer channels) exercise the whole pipeline in tests without weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class AutoencoderSpec:
    """Constructor arguments of ``AutoencoderKlMaisi`` that change the architecture."""

    num_channels: tuple[int, ...] = (64, 128, 256)
    num_res_blocks: tuple[int, ...] = (2, 2, 2)
    latent_channels: int = 4
    norm_num_groups: int = 32
    norm_eps: float = 1e-6


@dataclass(frozen=True)
class UNetSpec:
    """Constructor arguments of ``DiffusionModelUNetMaisi`` that change the architecture."""

    num_channels: tuple[int, ...] = (64, 128, 256, 512)
    attention_levels: tuple[bool, ...] = (False, False, True, True)
    num_head_channels: tuple[int, ...] = (0, 0, 32, 32)
    num_res_blocks: int = 2
    norm_num_groups: int = 32
    norm_eps: float = 1e-6
    latent_channels: int = 4
    extra: dict = field(default_factory=dict)


AUTOENCODER_V1 = AutoencoderSpec()
UNET_V1 = UNetSpec()
#: Same structure, a few thousand times fewer parameters: for tests and weight-free examples.
AUTOENCODER_TINY = AutoencoderSpec(
    num_channels=(8, 8, 16), num_res_blocks=(1, 1, 1), norm_num_groups=4
)
UNET_TINY = UNetSpec(
    num_channels=(8, 8, 16, 16), num_head_channels=(0, 0, 8, 8), num_res_blocks=1, norm_num_groups=4
)

SPECS = {"v1": (AUTOENCODER_V1, UNET_V1), "tiny": (AUTOENCODER_TINY, UNET_TINY)}


def build_autoencoder(
    spec: AutoencoderSpec = AUTOENCODER_V1, *, num_splits: int = 1
) -> torch.nn.Module:
    """``AutoencoderKlMaisi`` (3D, 1 channel in/out, no attention), in eval mode.

    ``num_splits`` > 1 convolves in slabs to save memory (same keys, same result up to rounding).
    """
    from monai.apps.generation.maisi.networks.autoencoderkl_maisi import AutoencoderKlMaisi

    model = AutoencoderKlMaisi(
        spatial_dims=3,
        in_channels=1,
        out_channels=1,
        num_res_blocks=list(spec.num_res_blocks),
        num_channels=list(spec.num_channels),
        attention_levels=[False] * len(spec.num_channels),
        latent_channels=spec.latent_channels,
        norm_num_groups=spec.norm_num_groups,
        norm_eps=spec.norm_eps,
        with_encoder_nonlocal_attn=False,
        with_decoder_nonlocal_attn=False,
        use_convtranspose=False,
        use_checkpointing=False,
        num_splits=num_splits,
        dim_split=1,
        norm_float16=False,
        print_info=False,
        save_mem=True,
    )
    return model.eval()


def build_unet(spec: UNetSpec = UNET_V1, *, use_flash_attention: bool = False) -> torch.nn.Module:
    """``DiffusionModelUNetMaisi`` with body-region and spacing inputs, in eval mode.

    ``use_flash_attention`` needs CUDA; it changes no keys.
    """
    from monai.apps.generation.maisi.networks.diffusion_model_unet_maisi import (
        DiffusionModelUNetMaisi,
    )

    model = DiffusionModelUNetMaisi(
        spatial_dims=3,
        in_channels=spec.latent_channels,
        out_channels=spec.latent_channels,
        num_channels=list(spec.num_channels),
        attention_levels=list(spec.attention_levels),
        num_head_channels=list(spec.num_head_channels),
        num_res_blocks=spec.num_res_blocks,
        norm_num_groups=spec.norm_num_groups,
        norm_eps=spec.norm_eps,
        use_flash_attention=use_flash_attention,
        include_top_region_index_input=True,
        include_bottom_region_index_input=True,
        include_spacing_input=True,
        **spec.extra,
    )
    return model.eval()


def up_block_channels(spec: UNetSpec) -> list[int]:
    """Channels of the outputs of ``up_blocks[0..n-1]`` (deepest first): 512, 256, 128, 64 for v1."""
    return list(reversed(spec.num_channels))


__all__ = [
    "AutoencoderSpec",
    "UNetSpec",
    "AUTOENCODER_V1",
    "UNET_V1",
    "AUTOENCODER_TINY",
    "UNET_TINY",
    "SPECS",
    "build_autoencoder",
    "build_unet",
    "up_block_channels",
]
