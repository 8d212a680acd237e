"""The options of ConvexAdam: one model read by the engine and validated from the pipeline YAML.

Kept apart from :mod:`medfeat.engine.convex_adam` so that reading a pipeline imports no torch.
"""

from __future__ import annotations

from pydantic import Field

from medfeat.config.base import ConfigModel


class ConvexAdamConfig(ConfigModel):
    """Options of :func:`medfeat.engine.convex_adam.convex_adam` (Siebert et al., MICCAI 2021).

    ``vox`` means voxels of the feature grid unless a description says otherwise; the coarse
    grid and the instance-optimisation (io) grid are that grid pooled by ``grid_spacing_vox`` and
    ``io_resolution_factor``.
    """

    grid_spacing_vox: int = Field(
        6,
        ge=1,
        description="Coarse grid of the discrete search, in feature voxels: the features are "
        "average-pooled by this factor.",
    )
    search_radius_vox: int = Field(
        4,
        ge=1,
        description="Discrete search radius, in coarse-grid voxels: candidates are [-r, r]^3, so "
        "the capture range is search_radius_vox * grid_spacing_vox feature voxels.",
    )
    cost_smoothing_passes: int = Field(
        2, ge=0, description="3x3x3 box filters applied to the cost volume (count; 0 = none)."
    )
    coupling_schedule: tuple[float, ...] = Field(
        (0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
        description="Coupling weights of the alternating convex optimisation, one step each "
        "(cost per squared coarse-grid voxel).",
    )
    inverse_consistent: bool = Field(
        True, description="Symmetrise the coarse forward and backward fields."
    )
    ic_iterations: int = Field(
        15,
        ge=0,
        description="Fixed-point iterations of that symmetrisation (count; used when "
        "inverse_consistent).",
    )
    io_resolution_factor: int = Field(
        2,
        ge=1,
        description="Instance optimisation on features average-pooled by this factor (feature "
        "voxels per io voxel; 1 = full resolution).",
    )
    io_grid_spacing_vox: int = Field(
        2,
        ge=1,
        description="Control grid of the optimised field, in io-resolution voxels (1 = dense).",
    )
    io_max_points: int = Field(
        0,
        ge=0,
        description="Data term per Adam step on a fresh random subset of at most this many "
        "io-resolution voxels, inside the fixed mask when given (count; 0 = all).",
    )
    adam_iterations: int = Field(
        80, ge=0, description="Adam steps of the instance optimisation (count; 0 = coarse only)."
    )
    adam_lr: float = Field(
        1.0, gt=0, description="Adam step size, in io-resolution voxels per step."
    )
    smoothness_weight: float = Field(
        3.0,
        ge=0,
        description="Weight of the diffusion penalty (squared field gradient in io-resolution "
        "voxels per voxel) against the SSD of the features (unitless).",
    )
    field_smoothing_kernel_vox: int = Field(
        3,
        ge=1,
        description="Box filter applied to the field in every Adam step, in control-grid voxels "
        "(odd; 1 = none).",
    )
    field_smoothing_passes: int = Field(
        3, ge=0, description="Passes of that box filter per Adam step (count; 0 = none)."
    )
    fine_iterations: int = Field(
        0,
        ge=0,
        description="Adam steps of an optional refinement at full feature resolution after the "
        "io stage (count; 0 = off).",
    )
    fine_grid_spacing_vox: int = Field(
        4,
        ge=1,
        description="Control grid of the full-resolution refinement, in feature voxels.",
    )
    fine_lr: float = Field(
        0.5,
        gt=0,
        description="Adam step size of the full-resolution refinement, in feature voxels per step.",
    )
    fine_max_points: int = Field(
        131072,
        ge=1,
        description="Data term of the full-resolution refinement on one fixed random subset of at "
        "most this many feature voxels, inside the fixed mask when given (count).",
    )
    compute_inverse: bool = Field(
        True,
        description="Also return the moving->fixed field (fixed-point inversion of the final "
        "forward field).",
    )
    inverse_iterations: int = Field(
        20, ge=1, description="Fixed-point iterations of that inversion (count)."
    )
    inverse_resolution_factor: int = Field(
        1,
        ge=1,
        description="Invert the field on a grid coarser by this factor (feature voxels per "
        "inversion voxel), then upsample; 2 is 8x cheaper and loses little.",
    )
