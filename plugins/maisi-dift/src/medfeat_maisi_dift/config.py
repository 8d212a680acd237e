"""YAML options of the plugin's components (pydantic; light: no torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medfeat.api import ConfigModel, InputPath

Region = Literal["head-neck", "thorax", "abdomen", "pelvis-lower-body"]


class MaisiDiftConfig(ConfigModel):
    """Options of the ``maisi-dift`` backbone. Defaults reproduce the MedDIFT reference."""

    autoencoder_checkpoint: InputPath | None = Field(
        None,
        description="Local MAISI v1 autoencoder file (autoencoder_epoch273.pt / _v1.pt); "
        "relative to the pipeline file's folder.",
    )
    unet_checkpoint: InputPath | None = Field(
        None,
        description="Local MAISI v1 DDPM U-Net file (diff_unet_3d_ddpm.pt); relative to the "
        "pipeline file's folder.",
    )
    random_weights: bool = Field(
        False,
        description="Run without checkpoints on randomly initialised networks (speed/memory "
        "tests only; outputs are NOT results).",
    )
    architecture: Literal["v1", "tiny"] = Field(
        "v1",
        description="'v1' = released MAISI sizes; 'tiny' = same structure, few channels (tests).",
    )
    random_scale_factor: float = Field(
        1.0,
        gt=0,
        description="Latent scale factor (dimensionless) used with random_weights (no checkpoint).",
    )
    timestep: int = Field(
        20, ge=0, lt=1000, description="DDPM timestep t (step index, 0..999) of the noise draw."
    )
    levels: list[int] = Field(
        [0, 1, 2, 3],
        min_length=1,
        description="Up-block outputs to return (indices 0..3; 0 = deepest, 512 channels).",
    )
    posterior: Literal["sample", "mean"] = Field(
        "sample",
        description="'sample' = mu + sigma*eps (reference); 'mean' = mu (departure, deterministic).",
    )
    num_noise_draws: int = Field(
        1,
        ge=1,
        description="Average features over this many noise draws (count; departure, as in DIFT).",
    )
    spacing_input: Literal["original", "resized"] = Field(
        "original",
        description="Spacing given to the U-Net: the file's (reference) or the resized volume's "
        "(departure).",
    )
    spacing_axis_order: Literal["file", "ras"] = Field(
        "file",
        description="Axis order of the spacing given to the U-Net: the file's own axes, as "
        "SimpleITK's GetSpacing() (reference, even when RAS reorientation permutes the axes), or "
        "the reoriented RAS axes the network sees (departure).",
    )
    spacing_float16: bool = Field(
        True,
        description="Round the spacing (mm) to float16 before x100, as the reference builds that "
        "tensor (0.7871 mm -> 0.787109375 mm); false = float32 (departure).",
    )
    noise: Literal["pair-stream", "per-image"] = Field(
        "pair-stream",
        description="'pair-stream' (reference): one generator seeded noise_seed for each pair; "
        "image A's posterior and diffusion noise are drawn first, then B's (odd extractions "
        "start the stream, even ones continue it). 'per-image' (departure): every image starts "
        "from noise_seed, so its features do not depend on extraction order.",
    )
    noise_seed: int | None = Field(
        42,
        ge=0,
        description="Seed of the noise generator (reference: 42); None = the run's seed.",
    )
    top_region: Region = Field(
        "thorax", description="Body region of the volume's top (conditioning, one-hot x 100)."
    )
    bottom_region: Region = Field(
        "thorax", description="Body region of the volume's bottom (conditioning, one-hot x 100)."
    )
    intensity: Literal["hu", "unit"] = Field(
        "hu", description="'hu': window below to [0, 1]; 'unit': data are already in [0, 1]."
    )
    window_min_hu: float = Field(-1000.0, description="Lower bound of the window (HU).")
    window_max_hu: float = Field(1000.0, description="Upper bound of the window (HU).")
    size_multiple_vox: int = Field(
        128,
        ge=16,
        description="Each axis is stretched to max(round(d/m),1)*m voxels (reference: 128).",
    )
    normalise_levels: bool = Field(
        False, description="L2-normalise each level along channels at its native resolution."
    )
    encoder: Literal["streaming", "monai"] = Field(
        "streaming",
        description="'streaming': the autoencoder's encoder run layer by layer in slabs of "
        "encoder_slab_mib, keeping at most two full-resolution activations (same result up to "
        "float rounding); 'monai': MONAI's own forward with autoencoder_num_splits.",
    )
    encoder_slab_mib: int = Field(
        256,
        ge=8,
        description="Size (MiB) of one slab of the streaming encoder: smaller = less memory, "
        "slightly slower.",
    )
    encoder_recompute: bool = Field(
        False,
        description="encoder 'streaming' only: residual blocks keep one full-resolution "
        "activation instead of two by computing their first convolution twice (about 4 GiB "
        "less at 256^3, a slower encoder; same result up to float rounding).",
    )
    autoencoder_num_splits: int = Field(
        4,
        ge=1,
        description="encoder 'monai' only: MONAI's convolution in this many slabs (count); same "
        "result up to float rounding.",
    )
    unet_attention: Literal["fused", "explicit"] = Field(
        "fused",
        description="U-Net attention: 'fused' = PyTorch's scaled_dot_product_attention on any "
        "device (never builds the tokens x tokens matrix; same result up to rounding); "
        "'explicit' = MONAI's explicit attention matrix (about 1 GiB more at 256^3 on CPU).",
    )
    autocast: bool = Field(True, description="float16 autocast on CUDA (CPU always float32).")

    @model_validator(mode="after")
    def _check(self) -> MaisiDiftConfig:
        if any(lvl not in (0, 1, 2, 3) for lvl in self.levels) or len(set(self.levels)) != len(
            self.levels
        ):
            raise ValueError(f"levels must be distinct values in 0..3, got {self.levels}")
        if (
            self.encoder == "monai"
            and (self.size_multiple_vox // 4) // self.autoencoder_num_splits < 3
        ):
            raise ValueError(
                f"autoencoder_num_splits {self.autoencoder_num_splits} cuts the autoencoder's "
                f"coarsest level ({self.size_multiple_vox // 4} voxels per axis) into slabs "
                "thinner than its 3-voxel kernels; lower it"
            )
        if self.window_max_hu <= self.window_min_hu:
            raise ValueError("window_max_hu must exceed window_min_hu")
        has = (self.autoencoder_checkpoint is not None, self.unet_checkpoint is not None)
        if self.random_weights and any(has):
            raise ValueError("give checkpoints or random_weights: true, not both")
        if not self.random_weights and not all(has):
            raise ValueError(
                "maisi-dift needs autoencoder_checkpoint and unet_checkpoint (local MAISI v1 "
                "files; see the plugin README), or random_weights: true for weight-free tests"
            )
        if self.architecture == "tiny" and not self.random_weights:
            raise ValueError("architecture 'tiny' has no released weights; use random_weights")
        return self


class MedDiftMatcherConfig(ConfigModel):
    """Options of the ``meddift-matcher`` (the engine's memory-bounded matcher)."""

    candidates: Literal["image", "finest-level"] = Field(
        "image",
        description="'image' = every voxel of B's image grid (reference: argmax over all voxels); "
        "'finest-level' = voxels of the finest feature level (16x-64x fewer, faster).",
    )
    box_half_size_mm: float | list[float] | None = Field(
        None,
        description="MedDIFT-Box: half-size (mm; one value or one per world axis x, y, z) of the "
        "box around the query that holds the candidates; None = global search.",
    )
    image_scoring: Literal["native-cells", "interpolated-descriptors"] = Field(
        "native-cells",
        description="candidates 'image': how the score at an image voxel is computed (both exact). "
        "'native-cells': from the levels' native cells (the query's dot products interpolated, "
        "the norm as a quadratic form in the 8 surrounding cells); 'interpolated-descriptors': "
        "every channel interpolated at every candidate (slow; kept for comparison).",
    )
    chunk_candidates: int = Field(
        16384,
        ge=64,
        description="Candidate voxels scored at once (count; bounds memory) by the "
        "'interpolated-descriptors' and 'finest-level' searches.",
    )


class LungCTConfig(ConfigModel):
    """Options of the ``learn2reg-lungct`` dataset (Learn2Reg LungCT layout)."""

    root: InputPath = Field(
        description="Learn2Reg LungCT folder (with imagesTr, masksTr, keypointsTr); relative to "
        "the pipeline file's folder."
    )
    split: Literal["Tr", "Ts", "Val"] = Field(
        "Tr", description="Folder suffix: imagesTr, masksTr, keypointsTr for 'Tr'."
    )
    cases: list[str] | None = Field(None, description="Case ids such as '0001' (default: all).")
    keypoint_axis_order: Literal["xyz", "zyx"] = Field(
        "xyz", description="Axis order of the keypoint CSV rows (Learn2Reg: ITK voxel x,y,z)."
    )
    max_keypoints: int | None = Field(
        None,
        ge=1,
        description="Random subset of keypoints per case (count; paper ablations: 100); None = all.",
    )
    keypoint_seed: int = Field(0, description="Seed of the keypoint subset.")
    use_masks: bool = Field(True, description="Attach masksTr/<case>_0000 as the fixed mask.")
