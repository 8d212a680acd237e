"""The LEAF networks, built from diffusers blocks: U-Net, image encoder, mask codecs, projector."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from medfeat.api import ConfigError
from medfeat_leaf.config import ArchitectureConfig

#: kl-f8 VAE latent scale (LDM/Stable Diffusion convention).
KL_F8_SCALE = 0.18215


@dataclass(frozen=True)
class UNetSpec:
    """U-Net sizes; ``attention[i]`` says whether level ``i`` has self-attention."""

    channels: tuple[int, ...]
    attention: tuple[bool, ...]
    layers_per_level: int
    num_heads: int
    dropout: float


LDM_KL8_UNET = UNetSpec((192, 384, 384, 768, 768), (True, True, True, True, False), 2, 8, 0.2)
SMALL_UNET = UNetSpec((32, 64, 128), (False, False, True), 1, 4, 0.0)
KL_F8_VAE_CHANNELS = (128, 256, 512, 512)


def unet_spec(arch: ArchitectureConfig) -> UNetSpec:
    base = LDM_KL8_UNET if arch.preset == "ldm-kl-8" else SMALL_UNET
    channels = tuple(arch.unet_channels or base.channels)
    attention = tuple(arch.unet_attention_levels or base.attention)
    if len(attention) != len(channels):
        raise ConfigError(
            f"unet_attention_levels has {len(attention)} entries but unet_channels has {len(channels)}.",
            remedy="Give one true/false per U-Net level.",
        )
    heads = (
        arch.unet_num_heads if arch.preset == "ldm-kl-8" or arch.unet_channels else base.num_heads
    )
    bad = [c for c in channels if c % heads or c % 32]
    if bad:
        raise ConfigError(
            f"U-Net widths {bad} are not divisible by 32 (group norm) and by {heads} heads.",
            remedy="Use multiples of 32 that the head count divides.",
        )
    return UNetSpec(
        channels,
        attention,
        arch.unet_layers_per_level or base.layers_per_level,
        heads,
        base.dropout if arch.dropout is None else arch.dropout,
    )


def build_unet(spec: UNetSpec, in_channels: int, out_channels: int) -> nn.Module:
    """A diffusers :class:`UNet2DModel` laid out like the LDM ``openaimodel`` U-Net.

    Resblock up/down-sampling, scale-shift norm, [cos, sin] timestep embedding, group norm in the
    middle attention, and a fixed head count per attention block (LDM: 8 heads at every width).
    """
    from diffusers import UNet2DModel

    levels = len(spec.channels)
    down, up = [], []
    for i, attn in enumerate(spec.attention):
        last = i == levels - 1
        down.append(
            "AttnDownBlock2D" if attn else ("DownBlock2D" if last else "ResnetDownsampleBlock2D")
        )
    for i, attn in enumerate(reversed(spec.attention)):
        last = i == levels - 1
        up.append("AttnUpBlock2D" if attn else ("UpBlock2D" if last else "ResnetUpsampleBlock2D"))
    unet = UNet2DModel(
        in_channels=in_channels,
        out_channels=out_channels,
        block_out_channels=spec.channels,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        layers_per_block=spec.layers_per_level,
        downsample_type="resnet",
        upsample_type="resnet",
        dropout=spec.dropout,
        attention_head_dim=spec.channels[0] // spec.num_heads,
        attn_norm_num_groups=32,
        resnet_time_scale_shift="scale_shift",
        flip_sin_to_cos=True,
        freq_shift=0,
    )
    set_attention_heads(unet, spec.num_heads)
    return unet


def set_attention_heads(module: nn.Module, heads: int) -> None:
    """Give every attention block ``heads`` heads (diffusers fixes the head *width* instead)."""
    from diffusers.models.attention_processor import Attention

    for m in module.modules():
        if isinstance(m, Attention):
            m.heads = heads
            m.scale = (m.inner_dim // heads) ** -0.5


def widen_conv_in(unet: nn.Module, factor: int = 2) -> None:
    """Widen the input conv ``factor``-fold by repeating its weights divided by ``factor``.

    With the same latent in every copy the response equals the pretrained one; the bias is kept.
    """
    old = unet.conv_in
    new = nn.Conv2d(
        old.in_channels * factor,
        old.out_channels,
        old.kernel_size,
        old.stride,
        old.padding,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    with torch.no_grad():
        new.weight.copy_(old.weight.repeat(1, factor, 1, 1) / factor)
        new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=new.in_channels)


def build_vae(
    channels: tuple[int, ...] = KL_F8_VAE_CHANNELS,
    latent_channels: int = 4,
    layers_per_block: int = 2,
    norm_groups: int = 32,
) -> nn.Module:
    """A diffusers :class:`AutoencoderKL` (kl-f8 by default: ch 128, mult 1,2,4,4, z 4)."""
    from diffusers import AutoencoderKL

    n = len(channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(channels),
        layers_per_block=layers_per_block,
        latent_channels=latent_channels,
        norm_num_groups=norm_groups,
        scaling_factor=KL_F8_SCALE,
    )


class ImageEncoder(nn.Module):
    """VAE encoder + quant_conv taking the posterior mode (the mean): image in [-1, 1] -> z^x."""

    def __init__(self, encoder: nn.Module, quant_conv: nn.Module, latent_channels: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.quant_conv = quant_conv
        self.latent_channels = latent_channels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.quant_conv(self.encoder(image))[:, : self.latent_channels]

    @classmethod
    def from_vae(cls, vae: nn.Module) -> ImageEncoder:
        import copy

        return cls(
            copy.deepcopy(vae.encoder), copy.deepcopy(vae.quant_conv), vae.config.latent_channels
        )


class VAEMaskCodec(nn.Module):
    """Frozen kl-f8 VAE for masks: {0,1} mask -> 3 channels in [-1, 1] -> scaled posterior mode."""

    def __init__(self, vae: nn.Module, scale: float = KL_F8_SCALE) -> None:
        super().__init__()
        self.vae = vae.requires_grad_(False).eval()
        self.scale = scale
        self.latent_channels = vae.config.latent_channels
        self.downsample = 2 ** (len(vae.config.block_out_channels) - 1)

    def encode(self, mask: torch.Tensor) -> torch.Tensor:
        x = (mask * 2 - 1).expand(-1, 3, -1, -1)
        return self.vae.encode(x).latent_dist.mode() * self.scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent -> mask probability in [0, 1] (channel mean of the clamped decoding)."""
        x = self.vae.decode(z / self.scale).sample.clamp(-1, 1)
        return ((x + 1) / 2).mean(dim=1, keepdim=True)

    def train(self, mode: bool = True) -> VAEMaskCodec:  # stays frozen in eval mode
        return super().train(False)


class PixelShuffleMaskCodec(nn.Module):
    """Parameter-free, exactly invertible mask codec (space-to-depth) for from-scratch training."""

    def __init__(self, downsample: int) -> None:
        super().__init__()
        if downsample not in (2, 4, 8):
            raise ConfigError(
                f"mask_downsample must be 2, 4 or 8, got {downsample}.", remedy="Use 2, 4 or 8."
            )
        self.downsample = downsample
        self.latent_channels = downsample**2

    def encode(self, mask: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(mask * 2 - 1, self.downsample)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return (F.pixel_shuffle(z, self.downsample).clamp(-1, 1) + 1) / 2


def build_projector(in_dim: int, hidden: int, out_dim: int) -> nn.Module:
    """REPA projector: Linear-SiLU-Linear-SiLU-Linear."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden),
        nn.SiLU(),
        nn.Linear(hidden, hidden),
        nn.SiLU(),
        nn.Linear(hidden, out_dim),
    )


def small_image_encoder(channels: tuple[int, ...], latent_channels: int) -> ImageEncoder:
    """A randomly initialised VAE-style encoder (1 res block per level, group norm of 8 groups)
    downsampling by 2**(len(channels) - 1)."""
    return ImageEncoder.from_vae(build_vae(channels, latent_channels, 1, 8))
