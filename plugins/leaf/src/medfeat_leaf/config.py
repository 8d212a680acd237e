"""Configuration models of the LEAF components (pydantic, no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from medfeat.api import ConfigModel


class ArchitectureConfig(ConfigModel):
    """Network sizes. ``preset: ldm-kl-8`` is the paper's; ``small`` trains from scratch on a CPU."""

    preset: Literal["ldm-kl-8", "small"] = Field(
        "ldm-kl-8",
        description="ldm-kl-8: LDM lsun_churches U-Net + kl-f8 VAE (pretrained weights expected); "
        "small: a compact U-Net, a small image encoder and a parameter-free pixel-shuffle mask codec.",
    )
    unet_channels: list[int] | None = Field(
        None, description="U-Net block widths (default from the preset)."
    )
    unet_attention_levels: list[bool] | None = Field(
        None, description="Attention per U-Net level (default from the preset)."
    )
    unet_layers_per_level: int | None = Field(None, ge=1, description="Res blocks per level.")
    unet_num_heads: int = Field(8, ge=1, description="Attention heads of every attention block.")
    dropout: float | None = Field(None, ge=0, le=1, description="U-Net dropout (LDM: 0.2).")
    encoder_channels: list[int] | None = Field(
        None,
        description="Image-encoder block widths, multiples of 8 (small preset only, default "
        "16, 32, 64; ldm-kl-8 uses the VAE's).",
    )
    mask_downsample: int = Field(
        8,
        description="small preset: downsampling of the pixel-shuffle mask codec (2, 4 or 8; 8 "
        "matches kl-f8's latent size).",
    )


class ScheduleConfig(ConfigModel):
    """DDPM schedule (LEAF: 1000 steps, beta 0.0015 -> 0.0155, diffusers' ``linear``)."""

    num_train_timesteps: int = Field(1000, ge=2, description="Diffusion steps T (count).")
    beta_start: float = Field(
        0.0015, gt=0, description="Noise variance beta at the first step (unitless)."
    )
    beta_end: float = Field(
        0.0155, gt=0, description="Noise variance beta at the last step (unitless)."
    )
    beta_schedule: Literal["linear", "scaled_linear"] = Field(
        "linear",
        description="linear: the LEAF reference code; scaled_linear: LDM's own 'linear in sqrt space'.",
    )


class DistillationConfig(ConfigModel):
    """REPA-style alignment of a U-Net encoder block with the teacher's patch tokens."""

    enabled: bool = Field(
        True, description="Distil from the pipeline's `backbone` when one is given."
    )
    weight: float = Field(0.75, ge=0, description="lambda (LEAF uses 0.75 on CVC-ClinicDB).")
    unet_block: int = Field(
        0,
        ge=0,
        description="U-Net down block whose output is projected (0 = after the first "
        "downsampling, LDM input_blocks[3]).",
    )
    projector_hidden: int = Field(2048, ge=1, description="Projector MLP width.")


class TrainingConfig(ConfigModel):
    """Optimisation and bookkeeping."""

    image_size_px: int = Field(
        256, ge=16, description="Images and masks are resized to this square size."
    )
    batch_size: int = Field(4, ge=1, description="Images per optimiser step (per process).")
    max_steps: int = Field(100_000, ge=1, description="Optimiser steps (count).")
    max_minutes: float | None = Field(
        None, gt=0, description="Wall-clock bound; training stops (and checkpoints) when reached."
    )
    lr: float = Field(4e-5, gt=0, description="AdamW learning rate (per step).")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (unitless).")
    warmup_steps: int = Field(
        10_000, ge=0, description="Steps of linear learning-rate warm-up (count)."
    )
    ema_decay: float = Field(
        0.9999, ge=0, lt=1, description="Decay of the EMA weights per step (unitless)."
    )
    grad_clip: float = Field(1.0, gt=0, description="Gradient-norm clipping threshold (L2 norm).")
    bf16: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU).")
    checkpoint_every_steps: int = Field(
        1000, ge=1, description="Atomic resumable checkpoint period."
    )
    validate_every_steps: int = Field(
        2000, ge=1, description="Validation Dice period (optimiser steps)."
    )
    resume: bool = Field(
        True, description="Continue from out_dir/checkpoints/last.pt when present."
    )
    hflip: bool = Field(True, description="Random horizontal/vertical flips.")
    teacher_image_size_px: int | None = Field(
        224, description="Resize before the teacher (DINOv2: 224); none keeps the training size."
    )
    teacher_batch_images: int = Field(
        16,
        ge=1,
        description="Images per teacher forward pass when the teacher tokens are computed before "
        "training (backbones with a batched `tokens` method; same tokens, to rounding).",
    )


class LeafConfig(ConfigModel):
    """The `leaf` segmentation head."""

    architecture: ArchitectureConfig = Field(
        default_factory=ArchitectureConfig, description="Network sizes (preset and overrides)."
    )
    unet_checkpoint: Path | None = Field(
        None,
        description="CompVis LDM checkpoint (.ckpt/.pt/.safetensors) or diffusers U-Net folder.",
    )
    vae_checkpoint: Path | None = Field(
        None,
        description="kl-f8 VAE checkpoint (standalone LDM file) or diffusers AutoencoderKL folder.",
    )
    from_scratch: bool = Field(
        False, description="Allow random initialisation of the ldm-kl-8 preset (no weights given)."
    )
    prediction: Literal["x0", "epsilon", "v"] = Field(
        "x0", description="What the U-Net predicts; LEAF: x0 with an L1 loss on latents."
    )
    x0_loss_weight: float = Field(
        0.0,
        ge=0,
        description="Weight of an extra L1 between the x0 estimate and the mask latent (SDSeg's "
        "L1(eps) + L1(x0): 1.0 with `prediction: epsilon`). 0: LEAF's single L1 on the target.",
    )
    schedule: ScheduleConfig = Field(
        default_factory=ScheduleConfig, description="DDPM noise schedule."
    )
    scale_image_latent: bool = Field(
        True,
        description="Multiply the image latent z^x by the kl-f8 latent scale 0.18215 before the "
        "U-Net, in training and inference (the LEAF reference). false: departure, z^x enters "
        "unscaled (about 5.5 times larger than pretrained LDM weights expect).",
    )
    clip_x0: bool = Field(
        True,
        description="Clamp the predicted x0 latent to [-1, 1] (scaled-latent units) before "
        "decoding, as the reference's diffusers DDIM step (clip_sample=True). false: departure, "
        "the x0 estimate is decoded unclamped.",
    )
    distillation: DistillationConfig = Field(
        default_factory=DistillationConfig,
        description="REPA-style distillation from the pipeline's backbone (the teacher).",
    )
    training: TrainingConfig = Field(
        default_factory=TrainingConfig, description="Optimisation and bookkeeping."
    )
    threshold: float = Field(
        0.5, ge=0, le=1, description="Threshold of the decoded mask's channel mean."
    )
    inference_seed: int = Field(0, description="Seed of the noise z_T at inference.")
    use_ema: bool = Field(True, description="Predict with the EMA weights.")


class PatchDescriptorConfig(ConfigModel):
    """The weight-free 2D teacher."""

    patch_size_px: int = Field(16, ge=2, description="Token size in pixels.")
    orientation_bins: int = Field(
        8, ge=2, description="Gradient-orientation histogram bins over 0..180 degrees (count)."
    )
    scales: list[int] = Field(
        default_factory=lambda: [1, 2], description="Pooling scales in patches."
    )


class Dinov2Config(ConfigModel):
    """DINOv2 (with registers) through transformers, from a local folder only."""

    model_dir: Path = Field(
        description="Local transformers folder (config.json + model.safetensors) of "
        "facebook/dinov2-with-registers-base or similar."
    )
    image_size_px: int = Field(224, ge=14, description="Images are resized to this size.")


class ImageMaskFolderConfig(ConfigModel):
    """2D images with binary masks in two folders, matched by file stem."""

    root: Path = Field(description="Folder holding `images/` and `masks/` (names below).")
    images_dir: str = Field("images", description="Sub-folder of `root` holding the images.")
    masks_dir: str = Field("masks", description="Sub-folder of `root` holding the masks.")
    mask_threshold: int = Field(
        127, ge=0, le=255, description="Mask pixels > threshold are foreground."
    )
    split_csv: Path | None = Field(
        None, description="CSV with columns id,split (train/validation/test); overrides grouping."
    )
    groups_csv: Path | None = Field(
        None, description="CSV with columns id,group; whole groups go to one split."
    )
    grouping: Literal["none", "cvc-clinicdb"] = Field(
        "none",
        description="Built-in grouping: cvc-clinicdb maps frame numbers to its 29 sequences.",
    )
    fractions: list[float] = Field(
        default_factory=lambda: [0.8, 0.1, 0.1],
        description="train/validation/test share of groups.",
    )
    split_seed: int = Field(0, description="Seed of the group shuffle.")
    max_samples: int | None = Field(
        None, ge=1, description="Keep the first N of each split (tests)."
    )


class SyntheticBlobsConfig(ConfigModel):
    """Generated frames with one elliptical blob each (for examples and tests, not a benchmark)."""

    size_px: int = Field(64, ge=16, description="Side of the square frames (pixels).")
    spacing_mm: float = Field(0.5, gt=0, description="Pixel spacing written to the grids.")
    n_train: int = Field(16, ge=0, description="Training samples (count).")
    n_validation: int = Field(4, ge=0, description="Validation samples (count).")
    n_test: int = Field(4, ge=0, description="Test samples (count).")
    seed: int = Field(0, description="Seed of the generator (same seed, same samples).")
