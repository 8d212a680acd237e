"""Configuration models of the plugin's components (light: pydantic only, no torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from medfeat.api import ConfigModel, InputPath, OutputPath

Precision = Literal["auto", "float32", "bfloat16", "float16"]


class SliceEncodingConfig(ConfigModel):
    """How a 3D volume becomes 2D slices for a frozen 2D ViT, and how the tokens come back."""

    slice_axis: Literal["axial", "coronal", "sagittal"] = Field(
        "axial",
        description="World plane of the encoded slices (found from the image direction, not the array axes).",
    )
    slice_stride_vox: int = Field(
        3,
        ge=1,
        description="Encode every k-th slice (from the first to the last non-uniform one); slices "
        "in between get linearly interpolated token features.",
    )
    patch_spacing_mm: float = Field(
        3.0,
        gt=0,
        description="In-plane size of one patch token in mm; sets the patch grid from the slice extent.",
    )
    patch_grid: tuple[int, int] | None = Field(
        None,
        description="Explicit in-plane patch grid (rows, columns of the LPS-canonical slice); "
        "overrides patch_spacing_mm. DINO-Reg uses (112, 96) for MR-CT.",
    )
    max_tokens_per_slice: int = Field(
        20_000, ge=1, description="Refuse patch grids larger than this (attention is quadratic)."
    )
    modality: Literal["auto", "ct", "mr"] = Field(
        "auto",
        description="Intensity window: CT in HU, MR by percentiles; auto = CT if min < -500.",
    )
    ct_window_centre_hu: float = Field(50.0, description="CT window centre (HU).")
    ct_window_width_hu: float = Field(400.0, gt=0, description="CT window width (HU).")
    mr_percentiles: tuple[float, float] = Field(
        (0.5, 99.5), description="MR: clip to these percentiles (%), then map to [0, 1]."
    )
    uniform_tolerance: float = Field(
        1e-6,
        ge=0,
        description="Slices whose range of normalised intensity ([0, 1] units) is below this are "
        "not encoded (zero features).",
    )
    batch_slices: int = Field(4, ge=1, description="Slices encoded per forward pass.")
    precision: Precision = Field(
        "auto", description="auto = bfloat16 on CUDA when supported (else float16), float32 on CPU."
    )
    feature_cache_dir: OutputPath | None = Field(
        None,
        description="Folder that keeps the encoded slices' tokens between runs (relative: to the "
        "pipeline file's folder), keyed by the image's voxels and geometry, the weights, these "
        "options, the device type and the torch/transformers versions; files are written "
        "atomically. null: no cache. About 4 bytes x hidden size x tokens per encoded slice each.",
    )


class RandomOrCheckpoint(ConfigModel):
    """Refuses a checkpoint together with random_weights: the run uses one of them."""

    @model_validator(mode="after")
    def _one_weight_source(self):
        if self.checkpoint is not None and self.random_weights:
            raise ValueError(
                "give checkpoint or random_weights: true, not both (set checkpoint: null "
                "for a run with random weights)"
            )
        return self


class Dinov3WeightsConfig(RandomOrCheckpoint):
    """Which DINOv3 network and where its weights are (local files only)."""

    model: Literal["vit-s16", "vit-b16", "vit-l16", "vit-h16plus", "tiny"] = Field(
        "vit-l16", description="Architecture; `tiny` (2 layers, 64 dims) is for tests only."
    )
    checkpoint: InputPath | None = Field(
        None,
        description="Local official Meta .pth file or Hugging Face DINOv3ViTModel directory "
        "(relative: to the pipeline file's folder).",
    )
    random_weights: bool = Field(
        False,
        description="Use random weights instead of a checkpoint (tests/benchmarks; never a result).",
    )
    random_seed: int = Field(0, description="Seed of the random weights (with random_weights).")


class Dinov3SlicesConfig(SliceEncodingConfig, Dinov3WeightsConfig):
    """DINOv3 on the slices of a 3D volume."""


class Dinov3ImageConfig(Dinov3WeightsConfig):
    """DINOv3 on a 2D image (photograph, endoscopy frame, X-ray): patch tokens with geometry."""

    image_size_px: int = Field(
        224,
        ge=16,
        description="The image is resized to this square side (a multiple of the patch size, 16) "
        "before the ViT; tokens: image_size_px / 16 per side.",
    )
    precision: Precision = Field(
        "auto", description="auto = bfloat16 on CUDA when supported (else float16), float32 on CPU."
    )


class Dinov2SlicesConfig(SliceEncodingConfig, RandomOrCheckpoint):
    """DINOv2-with-registers on the slices of a 3D volume (DINO-Reg's backbone)."""

    model: Literal["vit-s14-reg", "vit-b14-reg", "vit-l14-reg", "vit-g14-reg", "tiny"] = Field(
        "vit-l14-reg", description="DINOv2-with-registers architecture (DINO-Reg uses ViT-L/14)."
    )
    checkpoint: InputPath | None = Field(
        None,
        description="Local Hugging Face Dinov2WithRegistersModel directory (relative: to the "
        "pipeline file's folder).",
    )
    random_weights: bool = Field(
        False,
        description="Use random weights instead of a checkpoint (tests/benchmarks; never a result).",
    )
    random_seed: int = Field(0, description="Seed of the random weights (with random_weights).")


class LabelMappedFilesConfig(ConfigModel):
    """A fixed/moving pair whose label maps use different ids (e.g. TotalSegmentator CT vs MR)."""

    fixed: InputPath = Field(
        description="Fixed image file (NIfTI/NRRD/MHA; relative: to the pipeline file's folder)."
    )
    moving: InputPath = Field(
        description="Moving image file (NIfTI/NRRD/MHA; relative: to the pipeline file's folder)."
    )
    fixed_labels: InputPath = Field(
        description="Label map of the fixed image, on its grid (ids as in fixed_label_map)."
    )
    moving_labels: InputPath = Field(
        description="Label map of the moving image, on its grid (ids as in moving_label_map)."
    )
    fixed_label_map: dict[int, list[int]] = Field(
        description="Shared label id -> the fixed label ids merged into it; unlisted ids become 0."
    )
    moving_label_map: dict[int, list[int]] = Field(
        description="Shared label id -> the moving label ids merged into it; unlisted ids become 0."
    )
    fixed_mask: InputPath | None = Field(
        None,
        description="Optional mask of the fixed image (non-zero = inside), on its grid; "
        "relative: to the pipeline file's folder.",
    )
    initial_alignment: Literal["none", "image-centres", "body-centroids"] = Field(
        "none",
        description="Translate the moving image (and its labels) in world space before registration: "
        "match image centres or centroids of the automatic body masks (no labels are used).",
    )
    case_id: str = Field(
        "case", description="Name of the case: its output folder and its key in metrics.json."
    )
