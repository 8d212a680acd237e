"""The options of ConvexAdam: one model read by the engine and validated from the pipeline YAML.

Every length is in millimetres. The engine works on an isotropic feature grid of spacing ``s`` mm
(the registration pipeline's working grid) and turns each length into whole voxels there with
:func:`voxel_plan`. Kept apart from :mod:`medfeat.engine.convex_adam` so that reading a pipeline
imports no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import Field, field_validator

from medfeat.config.base import ConfigModel
from medfeat.errors import ConfigError

#: The largest length option (mm): beyond it a setting is a typo, not a registration.
MAX_LENGTH_MM = 200.0


def _length(default: float | None, description: str, upper: float = MAX_LENGTH_MM):
    return Field(default, gt=0, le=upper, allow_inf_nan=False, description=description)


def _count(default: int, description: str, lower: int = 0):
    return Field(default, ge=lower, le=1_000_000, strict=True, description=description)


class ConvexAdamConfig(ConfigModel):
    """Options of :func:`medfeat.engine.convex_adam.convex_adam` (Siebert et al., MICCAI 2021).

    Lengths are in mm. The discrete search runs on the feature grid average-pooled to
    ``grid_spacing_mm``, the Adam instance optimisation (io) on features pooled to
    ``io_spacing_mm``; each is rounded to a whole number of feature voxels.
    """

    grid_spacing_mm: float = _length(
        12.0,
        "Coarse grid of the discrete search (mm): the features are average-pooled to this "
        "spacing (a whole number of feature voxels).",
        upper=100.0,
    )
    search_radius_mm: float = _length(
        48.0,
        "Capture range of the discrete search (mm): candidate displacements reach this far "
        "along each axis, in steps of grid_spacing_mm.",
    )
    cost_smoothing_passes: int = _count(
        2, "3x3x3 box filters (on the coarse grid) applied to the cost volume (count; 0 = none)."
    )
    coupling_schedule: tuple[float, ...] = Field(
        (0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
        description="Coupling weights of the alternating convex optimisation, one step each "
        "(positive; cost per squared coarse-grid step, i.e. per (grid_spacing_mm)^2).",
    )
    inverse_consistent: bool = Field(
        True, description="Symmetrise the coarse forward and backward fields."
    )
    ic_iterations: int = _count(
        15, "Fixed-point iterations of that symmetrisation (count; used when inverse_consistent)."
    )
    io_spacing_mm: float = _length(
        4.0,
        "Grid of the Adam instance optimisation (mm): the features are average-pooled to this "
        "spacing (a whole number of feature voxels; the feature spacing = full resolution).",
        upper=100.0,
    )
    io_control_spacing_mm: float = _length(
        8.0,
        "Control-point spacing of the optimised field (mm; a whole number of io voxels, at "
        "least one).",
        upper=100.0,
    )
    io_max_points: int = _count(
        0,
        "Data term per Adam step on at most this many io voxels (inside the fixed mask when "
        "given): the voxels are dealt into interleaved subsets of this size, one per step, in "
        "a random order per pass (count; 0 = all).",
    )
    adam_iterations: int = _count(80, "Adam steps of the instance optimisation (count; 0 = off).")
    adam_lr_mm: float = _length(
        4.0, "Adam step size of the control-point displacements (mm per step).", upper=100.0
    )
    smoothness_weight: float = Field(
        3.0,
        ge=0,
        le=1e6,
        allow_inf_nan=False,
        description="Weight of the diffusion penalty (squared displacement gradient, mm per mm) "
        "against the SSD of the features (unitless).",
    )
    field_smoothing_width_mm: float = _length(
        24.0,
        "Width of the box filter applied to the field in every Adam step (mm; rounded to an odd "
        "number of control points; below 2 control spacings = none).",
    )
    field_smoothing_passes: int = _count(
        3, "Passes of that box filter per Adam step (count; 0 = none)."
    )
    fine_iterations: int = _count(
        0,
        "Adam steps of an optional refinement at full feature resolution after the io stage "
        "(count; 0 = off).",
    )
    fine_control_spacing_mm: float = _length(
        8.0, "Control-point spacing of the full-resolution refinement (mm).", upper=100.0
    )
    fine_lr_mm: float = _length(
        1.0, "Adam step size of the full-resolution refinement (mm per step).", upper=100.0
    )
    fine_max_points: int = _count(
        131072,
        "Data term of the full-resolution refinement on one fixed random subset of at most this "
        "many feature voxels, inside the fixed mask when given (count).",
        lower=1,
    )
    compute_inverse: bool = Field(
        True,
        description="Also return the moving->fixed field (fixed-point inversion of the final "
        "forward field).",
    )
    inverse_iterations: int = _count(
        20, "Fixed-point iterations of that inversion (count).", lower=1
    )
    inverse_spacing_mm: float | None = _length(
        None,
        "Invert the field on a grid of this spacing (mm; a whole number of feature voxels), "
        "then upsample; None = the feature spacing. Twice the feature spacing is 8x cheaper "
        "and loses little.",
        upper=100.0,
    )

    @field_validator("coupling_schedule")
    @classmethod
    def _positive_schedule(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError("coupling_schedule needs at least one weight, e.g. [0.1, 1.0]")
        if any(not math.isfinite(v) or v <= 0 for v in value):
            raise ValueError(f"every coupling_schedule weight must be positive and finite: {value}")
        return value


@dataclass(frozen=True)
class VoxelPlan:
    """:class:`ConvexAdamConfig` turned into whole voxels of an isotropic feature grid."""

    spacing_mm: float
    grid: int  # feature voxels per coarse voxel
    radius: int  # search radius in coarse voxels
    io: int  # feature voxels per io voxel
    io_control: int  # io voxels per control point
    smoothing_kernel: int  # odd box width in control points
    lr: float  # io voxels per Adam step
    fine_control: int  # feature voxels per control point of the fine stage
    fine_lr: float  # feature voxels per step
    inverse: int  # feature voxels per inversion voxel

    def describe(self) -> dict[str, float]:
        """The effective lengths in mm (what the rounding to whole voxels made of the options)."""
        s = self.spacing_mm
        return {
            "feature_spacing_mm": s,
            "grid_spacing_mm": self.grid * s,
            "search_radius_mm": self.radius * self.grid * s,
            "io_spacing_mm": self.io * s,
            "io_control_spacing_mm": self.io_control * self.io * s,
        }


def _whole(length_mm: float, unit_mm: float) -> int:
    return max(1, int(round(length_mm / unit_mm)))


def voxel_plan(config: ConvexAdamConfig, spacing_mm: float) -> VoxelPlan:
    """The voxel counts of ``config`` on an isotropic feature grid of ``spacing_mm``."""
    if not (spacing_mm > 0 and math.isfinite(spacing_mm)):
        raise ConfigError(f"ConvexAdam needs a positive feature spacing, got {spacing_mm} mm.")
    s = spacing_mm
    g = _whole(config.grid_spacing_mm, s)
    f = _whole(config.io_spacing_mm, s)
    c = _whole(config.io_control_spacing_mm, f * s)
    width = config.field_smoothing_width_mm / (c * f * s)
    kernel = 2 * int(round((width - 1.0) / 2.0 + 1e-9)) + 1 if width >= 1 else 1
    inverse = 1 if config.inverse_spacing_mm is None else _whole(config.inverse_spacing_mm, s)
    return VoxelPlan(
        spacing_mm=s,
        grid=g,
        radius=_whole(config.search_radius_mm, g * s),
        io=f,
        io_control=c,
        smoothing_kernel=max(1, kernel),
        lr=config.adam_lr_mm / (f * s),
        fine_control=_whole(config.fine_control_spacing_mm, s),
        fine_lr=config.fine_lr_mm / s,
        inverse=inverse,
    )
