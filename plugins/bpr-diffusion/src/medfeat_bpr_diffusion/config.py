"""Config models of every component of the plugin (pydantic only: importing this stays light)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from medfeat.api import ComponentRef, ConfigModel, nested_component


# ----------------------------------------------------------------------------- preprocessing
class PreprocessConfig(ConfigModel):
    """vox2vec preprocessing: canonical orientation, resampling, body crop, HU window -> [0, 1]."""

    spacing_mm: tuple[float, float, float] = Field(
        (1.0, 1.0, 2.0), description="Target spacing (ITK order x, y, z) of the canonical grid."
    )
    window_hu: tuple[float, float] = Field(
        (-1350.0, 1000.0), description="HU window mapped linearly to [0, 1] (clipped)."
    )
    body_threshold_hu: float = Field(
        -500.0, description="Voxels above this HU belong to the body (for the body crop)."
    )
    crop_to_body: bool = Field(
        True, description="Crop the canonical grid to the body's bounding box."
    )
    margin_mm: float = Field(4.0, ge=0, description="Margin around the body bounding box.")
    background_hu: float = Field(-1024.0, description="Value outside the scan after resampling.")


# ----------------------------------------------------------------------------- coordinates
# a coordinate-provider section ({name, options}); the core resolves and validates it
CoordinatesSection = nested_component("coordinate_provider")
ComponentSection = ComponentRef


class BBoxCoordinatesConfig(ConfigModel):
    body_threshold_hu: float = Field(
        -500.0, description="Voxels above this HU are body; their bounding box spans [0, 1]."
    )
    stride_vox: int = Field(1, ge=1, description="Output stride (coordinates are smooth).")


class BPRCoordinatesConfig(ConfigModel):
    checkpoint: Path = Field(
        description="Local MIC-DKFZ Body Part Regression weights: the `model.pt` of the public model "
        "folder, or the folder itself."
    )
    batch_slices: int = Field(16, ge=1, description="Slices per forward pass.")
    score_scale: float = Field(
        0.01, description="Scores are multiplied by this (slice scores span about -10..110)."
    )


class APEInputConfig(ConfigModel):
    """APE's input: vox2vec's dicom-canonical arrays (axes towards posterior, left, inferior),
    HU window -> [0, 1]."""

    spacing_mm: tuple[float, float, float] = Field(
        (1.0, 1.0, 1.5), description="Input spacing (ITK order x, y, z); APE: 1 x 1 x 1.5 mm."
    )
    window_hu: tuple[float, float] = Field(
        (-1000.0, 300.0), description="HU window mapped to [0, 1]; APE: [-1000, 300]."
    )
    pad_multiple_vox: int = Field(32, ge=1, description="Input sides are padded to a multiple.")
    background_hu: float = Field(-1024.0, description="Value outside the scan after resampling.")


class APECoordinatesConfig(APEInputConfig):
    checkpoint: Path = Field(
        description="Local APE weights: a Lightning checkpoint of APE's training (`state_dict` with "
        "`nn.*` keys and `scale`) or a plain state dict of the network."
    )
    patch_size_vox: tuple[int, int, int] | None = Field(
        (128, 128, 64),
        description="Sliding window in APE's array order (posterior, left, inferior axes; "
        "multiples of 32); APE trained on "
        "128 x 128 x 64 crops. null: the whole volume at once (memory grows with the scan).",
    )
    overlap: float = Field(0.5, ge=0, lt=1, description="Sliding-window overlap fraction.")
    stitching: Literal["central", "average"] = Field(
        "central", description="Merging overlapping windows (see the backbone's option)."
    )


# ----------------------------------------------------------------------------- network
class UNetConfig(ConfigModel):
    """3D DDPM U-Net: ResNet blocks, linear attention at high-resolution levels, full attention where
    a level's channels reach its number of tokens (and always in the bottleneck)."""

    base_channels: int = Field(64, ge=4, description="Channels of the first level.")
    channel_mults: tuple[int, ...] = Field((1, 2, 4, 8), description="Channel factor per level.")
    num_res_blocks: int = Field(2, ge=1, description="ResNet blocks per level.")
    attention_heads: int = Field(4, ge=1, description="Heads of every attention block (count).")
    attention_head_channels: int = Field(
        32, ge=4, description="Channels per attention head (count)."
    )
    groups: int = Field(8, ge=1, description="GroupNorm groups.")
    attention: Literal["paper", "none", "linear", "full"] = Field(
        "paper",
        description="paper: linear attention where tokens > channels, full attention otherwise; "
        "none/linear/full force one kind at every level.",
    )


class DiffusionConfig(ConfigModel):
    """DDPM noise schedule (MONAI's ``DDPMScheduler``)."""

    num_train_timesteps: int = Field(1000, ge=10, description="Diffusion steps T (count).")
    schedule: Literal["linear_beta", "scaled_linear_beta", "sigmoid_beta", "cosine"] = Field(
        "linear_beta", description="How beta grows from beta_start to beta_end over the T steps."
    )
    beta_start: float = Field(1e-4, description="Noise variance beta at the first step (unitless).")
    beta_end: float = Field(2e-2, description="Noise variance beta at the last step (unitless).")


# ----------------------------------------------------------------------------- pretrainer
class PretrainConfig(ConfigModel):
    """The ``bpr-ddpm`` pretrainer: a 3D DDPM on CT patches with coordinate channels."""

    preprocess: PreprocessConfig = Field(
        default_factory=PreprocessConfig,
        description="Resampling, body crop and HU window applied to every volume.",
    )
    coordinates: CoordinatesSection = Field(
        default_factory=lambda: ComponentRef(name="bbox-normalised"),
        description="Coordinate provider whose maps are concatenated to the noisy patch.",
    )
    unet: UNetConfig = Field(default_factory=UNetConfig, description="The 3D DDPM U-Net's sizes.")
    diffusion: DiffusionConfig = Field(
        default_factory=DiffusionConfig, description="DDPM noise schedule."
    )
    patch_size_vox: tuple[int, int, int] = Field(
        (32, 128, 128), description="Training patch, numpy order (k, j, i)."
    )
    batch_size: int = Field(1, ge=1, description="Patches per optimiser step (per process).")
    lr: float = Field(1e-4, gt=0, description="Adam learning rate (per step).")
    max_steps: int = Field(100_000, ge=1, description="Optimiser steps (the paper: 3000 epochs).")
    max_wall_time_min: float | None = Field(
        None, gt=0, description="Stop (with a checkpoint) after this many minutes."
    )
    patches_per_volume: int = Field(
        8, ge=1, description="Patches drawn from a volume before streaming the next one."
    )
    cache_volumes: int = Field(2, ge=1, description="Preprocessed volumes kept in memory.")
    ema_decay: float = Field(
        0.999, ge=0, lt=1, description="Decay of the EMA weights per step (unitless)."
    )
    checkpoint_every_steps: int = Field(
        500, ge=1, description="Period of the resumable checkpoint (optimiser steps)."
    )
    resume: bool = Field(True, description="Continue from out_dir/checkpoints/last.pt if present.")
    bf16: bool = Field(True, description="bf16 autocast on CUDA (ignored on CPU).")
    grad_clip: float | None = Field(
        1.0, gt=0, description="Gradient-norm clipping threshold (L2 norm); null: no clipping."
    )
    log_every_steps: int = Field(
        50, ge=1, description="Period of the mean-loss log line (optimiser steps)."
    )
    activation_checkpointing: bool = Field(
        False,
        description="Recompute each U-Net block's activations in the backward pass instead of "
        "keeping them: the same gradients, about half the activation memory (a 32x128x128 "
        "float32 CPU step of the paper-size U-Net: about 17 GiB of activations without it, 8.5 "
        "GiB with it, scaled from 16x64x64) for one more forward pass of time per step.",
    )

    @field_validator("patch_size_vox")
    @classmethod
    def _divisible(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(s < 4 for s in v):
            raise ValueError("patch_size_vox entries must be >= 4")
        return v


# ----------------------------------------------------------------------------- backbone
class BackboneConfig(ConfigModel):
    """The ``bpr-diffusion`` backbone: frozen DDPM U-Net decoder features."""

    checkpoint: Path | None = Field(
        None, description="A checkpoint written by the `bpr-ddpm` pretrainer (`last.pt`)."
    )
    random_init: bool = Field(
        False,
        description="Without checkpoint: use a randomly initialised network (a baseline, never a "
        "result). Uses `unet`, `preprocess` and `coordinates` below.",
    )
    weights: Literal["ema", "raw"] = Field("ema", description="Which weights of the checkpoint.")
    timesteps: list[int] = Field([10, 30, 60], min_length=1, description="Noise levels t.")
    feature_levels: list[int] = Field(
        [0, 1, 2, 3], min_length=1, description="Decoder levels to output (0 = full resolution)."
    )
    patch_size_vox: tuple[int, int, int] | None = Field(
        None, description="Sliding window (numpy order); default: the training patch."
    )
    overlap: float = Field(0.5, ge=0, lt=1, description="Sliding-window overlap fraction.")
    stitching: Literal["average", "central"] = Field(
        "average",
        description="Merging overlapping windows: `average` every window covering a voxel (the "
        "paper's aggregation), or `central` (each voxel from the window whose centre is nearest).",
    )
    noise_seed: int = Field(0, description="Seed of the (fixed) noise added at each timestep.")
    # only used with random_init (a checkpoint carries its own)
    unet: UNetConfig = Field(
        default_factory=UNetConfig,
        description="random_init only: the U-Net's sizes (a checkpoint carries its own).",
    )
    preprocess: PreprocessConfig = Field(
        default_factory=PreprocessConfig,
        description="random_init only: preprocessing (a checkpoint carries its own).",
    )
    coordinates: CoordinatesSection = Field(
        default_factory=lambda: ComponentRef(name="bbox-normalised"),
        description="random_init only: coordinate provider (a checkpoint carries its own).",
    )
    diffusion: DiffusionConfig = Field(
        default_factory=DiffusionConfig,
        description="random_init only: noise schedule (a checkpoint carries its own).",
    )


# ----------------------------------------------------------------------------- heads
class ProbeConfig(ConfigModel):
    """The ``fpn-probe`` and ``linear-probe`` heads, trained on frozen backbone features."""

    label_ids: list[int] | None = Field(
        None, description="Label values to segment (default: every non-zero label in training)."
    )
    hidden_channels: int = Field(128, ge=1, description="FPN channels (fpn-probe only).")
    lr: float = Field(3e-4, gt=0, description="Adam learning rate (per step).")
    steps: int = Field(45_000, ge=1, description="Optimiser steps (vox2vec: 150 x 300).")
    max_wall_time_min: float | None = Field(
        None, gt=0, description="Stop training after this many minutes; null: no bound."
    )
    batch_size: int = Field(7, ge=1, description="Crops per optimiser step (count).")
    crop_size_vox: tuple[int, int, int] = Field(
        (32, 128, 128), description="Training crop on the finest feature grid (numpy order)."
    )
    overlap: float = Field(0.5, ge=0, lt=1, description="Sliding-window overlap at inference.")
    stitching: Literal["central", "average"] = Field(
        "central",
        description="Merging overlapping windows at inference: `central` (vox2vec: each voxel from "
        "the window whose centre is nearest) or `average` of every window covering a voxel.",
    )
    threshold: float = Field(0.5, gt=0, lt=1, description="Sigmoid threshold of a class.")
    dice_weight: float = Field(1.0, ge=0, description="Weight of the Dice term (BCE has 1).")


# ----------------------------------------------------------------------------- datasets
class CTVolumesConfig(ConfigModel):
    paths: list[Path] = Field(
        min_length=1,
        description="Files or glob patterns of CT volumes; relative ones resolve against the "
        "YAML file's folder.",
    )
    unit_range_hu: tuple[float, float] | None = Field(
        None,
        description="For images already scaled to [0, 1] (e.g. lung4dct): the HU range they were "
        "scaled from, to map them back to HU. Applied only to images whose values lie in [0, 1]; "
        "images in HU are read as they are.",
    )


class ZSplitConfig(ConfigModel):
    image: Path = Field(description="CT volume (HU).")
    labels: Path = Field(description="Label map on the image's grid.")
    train_slices: tuple[int, int] = Field(description="[start, stop) along numpy axis 0.")
    validation_slices: tuple[int, int] | None = Field(None, description="[start, stop).")
    test_slices: tuple[int, int] = Field(description="[start, stop).")
