"""Built-in optimisers: ConvexAdam deformable registration and the memory-bounded feature matcher."""

from __future__ import annotations

from pydantic import Field

from medfeat.components import FeatureMap, Matches, RegistrationResult
from medfeat.config.base import ConfigModel
from medfeat.engine.convex_adam_config import ConvexAdamConfig
from medfeat.geometry import DisplacementField, Image, PointSet

__all__ = ["ConvexAdam", "ConvexAdamConfig", "FeatureMatcher", "MatcherConfig"]


class ConvexAdam:
    """Coupled convex discrete search + Adam refinement on any dense features (ConvexAdam)."""

    memory_remedy = (
        "Increase grid_spacing_mm, io_spacing_mm or the pipeline's working_spacing_mm, lower "
        "search_radius_mm, or use fewer feature channels (joint-pca)."
    )

    def __init__(self, config: ConvexAdamConfig, context) -> None:
        self.config, self.context = config, context

    def estimate_memory_bytes(self, features_fixed: FeatureMap, features_moving: FeatureMap) -> int:
        from medfeat.engine.convex_adam_config import voxel_plan

        level = features_fixed.levels[0]
        channels, voxels = int(level.data.shape[0]), level.grid.num_voxels
        plan = voxel_plan(self.config, min(level.grid.spacing))
        coarse = voxels / plan.grid**3
        candidates = (2 * plan.radius + 1) ** 3
        return int(4 * (3 * channels * voxels + 2 * coarse * candidates + 12 * voxels))

    def register(
        self,
        fixed: Image,
        moving: Image,
        features_fixed: FeatureMap,
        features_moving: FeatureMap,
        *,
        similarity=None,
        regulariser=None,
        fixed_mask=None,
        moving_mask=None,
    ) -> RegistrationResult:
        from medfeat.engine.convex_adam import convex_adam
        from medfeat.engine.convex_adam_config import voxel_plan
        from medfeat.errors import ConfigError
        from medfeat.features import fuse_levels, resample_level

        if similarity is not None or regulariser is not None:
            raise ConfigError(
                "optimiser convex-adam uses its own SSD-on-features data term and diffusion penalty.",
                remedy="Remove `similarity`/`regulariser` from the pipeline; tune smoothness_weight instead.",
            )
        if len(features_fixed.levels) > 1:
            grid = features_fixed.levels[0].grid
            features_fixed, features_moving = (
                fuse_levels(features_fixed, grid),
                fuse_levels(features_moving, grid),
            )
        lf = features_fixed.levels[0]
        iso = isotropic_grid(lf.grid)  # the engine's lengths (mm) need equal voxel sides
        lf = resample_level(lf, iso)
        lm = resample_level(features_moving.levels[0], iso)  # moving features on that grid
        mask = None
        if fixed_mask is not None:
            from medfeat.components import FeatureLevel

            mask = resample_level(
                FeatureLevel(fixed_mask.tensor()[None], fixed_mask.grid), lf.grid, "nearest"
            ).data[None]
        progress = self.context.progress.callback("ConvexAdam")
        fwd, bwd = convex_adam(
            lf.data[None].float(),
            lm.data[None].float(),
            self.config,
            mask,
            progress,
            seed=self.context.seed,
            spacing_mm=lf.grid.spacing[0],
        )
        forward = DisplacementField.from_array_voxels(fwd[0], lf.grid)
        inverse = (
            DisplacementField.from_array_voxels(bwd[0], lf.grid, "moving_to_fixed")
            if bwd is not None
            else None
        )
        if not lf.grid.same_as(
            fixed.grid
        ):  # features coarser than the image: bring the field to the image grid
            forward = _field_on_grid(forward, fixed.grid)
            inverse = _field_on_grid(inverse, moving.grid) if inverse is not None else None
        info = {"feature_channels": int(lf.data.shape[0])}
        plan = voxel_plan(self.config, lf.grid.spacing[0])
        info |= {f"effective_{k}": round(v, 4) for k, v in plan.describe().items()}
        return RegistrationResult(forward, inverse, info)


def isotropic_grid(grid, rtol: float = 1e-3):
    """``grid`` if its voxels are cubes, else the same box sampled at its finest spacing."""
    import numpy as np

    spacing = np.asarray(grid.spacing)
    if spacing.max() <= spacing.min() * (1 + rtol):
        return grid
    fine = float(spacing.min())
    size = np.maximum(1, np.round(np.asarray(grid.size_ijk) * spacing / fine)).astype(int)
    return grid.with_shape_and_spacing(tuple(int(n) for n in size[::-1]), (fine,) * grid.ndim)


def _field_on_grid(field: DisplacementField, grid) -> DisplacementField:
    import torch

    from medfeat.components import FeatureLevel
    from medfeat.features import resample_level

    level = FeatureLevel(torch.from_numpy(field.numpy()).float(), field.grid)
    data = resample_level(level, grid).data.double().numpy()
    return DisplacementField(data, grid, field.mapping)


def make_convex_adam(config: ConvexAdamConfig, context) -> ConvexAdam:
    return ConvexAdam(config, context)


class MatcherConfig(ConfigModel):
    """Options of the cosine feature matcher (:func:`medfeat.engine.matcher.match_points`)."""

    box_half_size_mm: float | list[float] | None = Field(
        None,
        description="Restrict candidates to a box around the query (MedDIFT-Box); None = global search.",
    )
    candidate_level: int | None = Field(
        None, description="Level whose voxels are the candidates (default: the finest)."
    )
    chunk_candidates: int = Field(
        16384, ge=64, description="Candidates scored at once; bounds memory."
    )


class FeatureMatcher:
    """For each query point in A, the voxel of B with the highest mean per-level cosine similarity."""

    memory_remedy = "Lower chunk_candidates, or match fewer points at once."

    def __init__(self, config: MatcherConfig) -> None:
        self.config = config

    def estimate_memory_bytes(
        self, features_a: FeatureMap, features_b: FeatureMap, num_queries: int
    ) -> int:
        c = sum(int(lv.data.shape[0]) for lv in features_a.levels)
        cmax = max(int(lv.data.shape[0]) for lv in features_a.levels)
        k = self.config.chunk_candidates
        return 4 * (num_queries * c + k * c + 8 * k * cmax + 2 * num_queries * k) + num_queries * k

    def match(self, features_a: FeatureMap, features_b: FeatureMap, queries: PointSet) -> Matches:
        from medfeat.engine.matcher import match_points
        from medfeat.errors import ConfigError

        if len(features_a.levels) != len(features_b.levels):
            raise ConfigError("the matcher needs the same feature levels for both images.")
        result = match_points(
            [lv.data for lv in features_a.levels],
            [lv.grid.array_index_to_world_matrix() for lv in features_a.levels],
            [lv.data for lv in features_b.levels],
            [lv.grid.array_index_to_world_matrix() for lv in features_b.levels],
            queries.points,
            candidate_level=self.config.candidate_level,
            box_half_size_mm=self.config.box_half_size_mm,
            chunk=self.config.chunk_candidates,
            extent_a=(
                (features_a.source.grid.array_index_to_world_matrix(), features_a.source.grid.shape)
                if features_a.source is not None
                else None
            ),
        )
        return Matches.from_positions(result.positions_mm.numpy(), result.scores.numpy())


def make_matcher(config: MatcherConfig, context) -> FeatureMatcher:
    return FeatureMatcher(config)
