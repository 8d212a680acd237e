"""LEAF: the trainable image encoder, the frozen mask codec, the U-Net and the REPA projector."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from medfeat.api import ConfigError
from medfeat_leaf.config import LeafConfig
from medfeat_leaf.networks import KL_F8_SCALE
from medfeat_leaf.schedule import Schedule


def distillation_loss(projected: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean negative cosine similarity over tokens and batch (``[B, N, D]`` each).

    The LEAF reference code divides by the batch size twice; this is the plain mean.
    """
    return -F.cosine_similarity(projected, teacher, dim=-1).mean()


class LeafModel(nn.Module):
    """Latent-diffusion segmentation: U-Net(concat(z^x, z^y_t), t) -> x0 / epsilon / v."""

    def __init__(
        self,
        config: LeafConfig,
        image_encoder: nn.Module,
        mask_codec: nn.Module,
        unet: nn.Module,
    ) -> None:
        super().__init__()
        self.config = config
        self.image_encoder = image_encoder
        self.mask_codec = mask_codec
        self.unet = unet
        self.projector: nn.Module | None = None
        self.schedule = Schedule(config.schedule)
        self._features: torch.Tensor | None = None
        block = config.distillation.unet_block
        if block >= len(unet.down_blocks) - 1:
            raise ConfigError(
                f"distillation.unet_block {block} is not a downsampling block of this U-Net "
                f"(it has {len(unet.down_blocks)} levels).",
                remedy=f"Use 0 .. {len(unet.down_blocks) - 2}.",
            )
        unet.down_blocks[block].register_forward_hook(self._keep_features)

    # ----------------------------------------------------------------- pieces
    def _keep_features(self, module: nn.Module, args: tuple, output: tuple) -> None:
        self._features = output[0]

    @property
    def token_channels(self) -> int:
        return int(self.unet.config.block_out_channels[self.config.distillation.unet_block])

    def token_grid(self, image_size_px: int) -> tuple[int, int]:
        """Student token grid for square images of ``image_size_px``."""
        n = (
            image_size_px
            // self.mask_codec.downsample
            // 2 ** (self.config.distillation.unet_block + 1)
        )
        return n, n

    def add_projector(self, teacher_dim: int) -> None:
        from medfeat_leaf.networks import build_projector

        hidden = self.config.distillation.projector_hidden
        self.projector = build_projector(self.token_channels, hidden, teacher_dim)

    def trainable_modules(self) -> nn.ModuleDict:
        mods = {"image_encoder": self.image_encoder, "unet": self.unet}
        if self.projector is not None:
            mods["projector"] = self.projector
        return nn.ModuleDict(mods)

    @property
    def image_latent_scale(self) -> float:
        """Factor applied to the image encoder's output (reference: the kl-f8 scale 0.18215)."""
        return KL_F8_SCALE if self.config.scale_image_latent else 1.0

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """z^x: the trainable encoder's posterior mode times the latent scale."""
        return self.image_encoder(images) * self.image_latent_scale

    def encode_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """z^y: the frozen mask codec's latent of ``{0, 1}`` masks (no autograd graph)."""
        with torch.no_grad():
            return self.mask_codec.encode(masks)

    def denoise(self, z_x: torch.Tensor, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.unet(torch.cat([z_x, z_t], dim=1), t).sample

    # ----------------------------------------------------------------- training
    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """Same as :meth:`loss` (so that DistributedDataParallel wraps the whole step)."""
        return self.loss(*args, **kwargs)

    def loss(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        generator: torch.Generator,
        teacher_tokens: torch.Tensor | None = None,
        mask_latents: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Diffusion L1 loss (+ lambda * distillation) for images in [-1, 1] and {0, 1} masks.

        ``mask_latents``: the frozen codec's ``encode(masks)``, when the caller kept them from an
        earlier step (the codec is frozen and deterministic, so they never change). The latents
        are made contiguous either way: a VAE returns channels-last latents for some batch sizes
        and not others, and the U-Net's dropout draws its mask in memory order.
        """
        if mask_latents is None:
            mask_latents = self.encode_masks(masks)
        z_y = mask_latents.contiguous()
        z_x = self.encode_image(images)
        b = images.shape[0]
        t = torch.randint(0, self.schedule.num_steps, (b,), generator=generator).to(images.device)
        noise = torch.randn(z_y.shape, generator=generator).to(z_y)
        z_t = self.schedule.add_noise(z_y, noise, t)
        out = self.denoise(z_x, z_t, t)
        target = self.schedule.target(self.config.prediction, z_y, noise, t)
        diffusion = F.l1_loss(out.float(), target.float())
        result = {"diffusion": diffusion, "total": diffusion}
        if self.config.x0_loss_weight > 0:  # SDSeg-style extra term on the x0 estimate
            x0 = self.schedule.to_x0(self.config.prediction, out.float(), z_t.float(), t)
            result["x0"] = F.l1_loss(x0, z_y.float())
            result["total"] = diffusion + self.config.x0_loss_weight * result["x0"]
        if teacher_tokens is not None and self.projector is not None:
            feats = self._features.flatten(2).transpose(1, 2)
            distill = distillation_loss(self.projector(feats).float(), teacher_tokens.float())
            result["distill"] = distill
            result["total"] = result["total"] + self.config.distillation.weight * distill
        return result

    # ----------------------------------------------------------------- inference
    @torch.inference_mode()
    def predict_probability(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Single step at t = T - 1 from pure noise: x0 estimate, clamped to [-1, 1] as DDIM's
        ``clip_sample`` does (unless ``clip_x0`` is off) -> decoded mask in [0, 1]."""
        z_x = self.encode_image(images)
        h, w = z_x.shape[-2:]
        shape = (images.shape[0], self.mask_codec.latent_channels, h, w)
        z_t = torch.randn(shape, generator=generator).to(z_x)
        t = torch.full((images.shape[0],), self.schedule.num_steps - 1, device=images.device)
        x0 = self.schedule.to_x0(self.config.prediction, self.denoise(z_x, z_t, t), z_t, t)
        if self.config.clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
        return self.mask_codec.decode(x0)

    def predict_mask(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Binary mask ``[B, 1, H, W]``: decoded channel mean > threshold."""
        return self.predict_probability(images, generator) > self.config.threshold
