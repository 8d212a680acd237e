"""Optimiser `adam`: a control-grid displacement optimised with Adam on any similarity + regulariser.

The field lives in world space on the fixed feature grid: control points ``control_spacing_mm``
apart along that grid's axes hold displacements in mm, upsampled to voxels by cubic B-splines or
linearly. Each step compares the fixed features with the moving features sampled at
``x + u(x)`` in world mm (the grids may differ in spacing, extent and direction), through the
pipeline's `similarity` (default `ssd`) plus its `regulariser` (default `diffusion`, with the
weight of that regulariser's own options). With ``levels > 1`` the same control grid is first fitted
on features average-pooled by ``2^(levels-1)``, then by half that, down to the features themselves.
A similarity with lengths in mm (local-ncc's window_mm) is bound to each level's voxel size, so its
window covers the same mm on every level (more voxels on finer levels).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from medfeat.components import FeatureMap, RegistrationResult
from medfeat.config.base import ConfigModel
from medfeat.geometry import DisplacementField, Grid, Image

if TYPE_CHECKING:
    import torch


class AdamConfig(ConfigModel):
    """Options of the `adam` optimiser (``vox`` = voxels of the fixed feature grid)."""

    control_spacing_mm: float = Field(
        15.0, gt=0, description="Control point spacing along every axis of the fixed grid (mm)."
    )
    interpolation: Literal["cubic-bspline", "linear"] = Field(
        "cubic-bspline", description="How control point displacements are upsampled to voxels."
    )
    levels: int = Field(
        1,
        ge=1,
        le=5,
        description="Resolution levels (count), coarse to fine: features average-pooled by "
        "2^(levels-1) voxels first, then by half that, down to 1; one control grid throughout.",
    )
    iterations: int = Field(100, ge=0, description="Adam steps per level (count).")
    learning_rate_mm: float = Field(
        1.0, gt=0, description="Adam step size of the control point displacements (mm per step)."
    )
    compute_inverse: bool = Field(
        True, description="Also return the moving->fixed field (fixed-point inversion)."
    )
    inverse_iterations: int = Field(
        20, ge=1, description="Fixed-point iterations of the field inversion (count)."
    )


class AdamRegistration:
    """Instance optimisation of a control-grid displacement with any similarity and regulariser."""

    def __init__(self, config: AdamConfig, context) -> None:
        self.config, self.context = config, context

    def register(
        self,
        fixed: Image,
        moving: Image,
        features_fixed: FeatureMap,
        features_moving: FeatureMap,
        *,
        similarity=None,
        regulariser=None,
        fixed_mask: Image | None = None,
    ) -> RegistrationResult:
        import torch

        from medfeat.engine.control_grid import ControlGrid
        from medfeat.engine.instance_optimisation import optimise_control_grid

        c = self.config
        lf, lm = _single_level(features_fixed), _single_level(features_moving)
        if lf.grid.ndim != 3 or lm.grid.ndim != 3:
            from medfeat.errors import ConfigError

            raise ConfigError(
                f"optimiser adam registers 3D feature maps, got grids {lf.grid.shape} and "
                f"{lm.grid.shape}.",
                remedy="Use a 3D backbone, or the matcher for 2D correspondence.",
            )
        similarity = similarity if similarity is not None else _default_similarity()
        regulariser = regulariser if regulariser is not None else _default_regulariser()
        device = torch.device(getattr(self.context, "device", "cpu") or "cpu")
        spacing = lf.grid.spacing_array_order
        control = ControlGrid(
            lf.grid.shape, tuple(c.control_spacing_mm / s for s in spacing), c.interpolation
        )
        mask = _mask_on(fixed_mask, lf.grid)
        levels = [_level(lf, lm, mask, control, 2**k, device) for k in reversed(range(c.levels))]
        nodes = control.zeros(device=device)
        progress = getattr(getattr(self.context, "progress", None), "callback", None)
        report = optimise_control_grid(
            nodes,
            levels,
            similarity,
            regulariser,
            c.iterations,
            c.learning_rate_mm,
            progress("adam") if progress is not None else None,
        )
        forward = _field_on(nodes.detach(), control, lf.grid, fixed.grid)
        inverse = _inverse(forward, c.inverse_iterations) if c.compute_inverse else None
        info = {
            "similarity": getattr(similarity, "name", getattr(similarity, "__name__", "custom")),
            "regulariser": getattr(regulariser, "name", getattr(regulariser, "__name__", "custom")),
            "control_nodes": str(list(control.nodes)),
            "final_similarity": report[-1]["similarity"],
            "final_regulariser": report[-1]["regulariser"],
            "feature_channels": int(lf.data.shape[0]),
        }
        bound = _similarity_per_level(similarity, levels)
        if bound:
            info["similarity_per_level"] = bound
        return RegistrationResult(forward, inverse, info)


def _single_level(fmap: FeatureMap):
    """The finest level, or all levels fused onto the first level's grid."""
    from medfeat.features import fuse_levels

    if len(fmap.levels) > 1:
        fmap = fuse_levels(fmap, fmap.levels[0].grid)
    return fmap.levels[0]


def _similarity_per_level(similarity, levels) -> str:
    """What a similarity with lengths in mm became on each level, coarse first (``""`` if none)."""
    bind = getattr(similarity, "for_spacing", None)
    if bind is None:
        return ""
    details = [getattr(bind(level.spacing_mm), "detail", "") for level in levels]
    return "; ".join(details) if any(details) else ""


def _default_similarity():
    from medfeat.builtins.losses import NoConfig, make_similarity

    return make_similarity("ssd")(NoConfig(), None)


def _default_regulariser():
    from medfeat.builtins.losses import WeightConfig, make_regulariser

    return make_regulariser("diffusion")(WeightConfig(), None)


def _mask_on(mask: Image | None, grid: Grid) -> torch.Tensor | None:
    """The fixed mask as ``[1, 1, *grid.shape]`` weights on the fixed feature grid (nearest)."""
    if mask is None:
        return None
    from medfeat.components import FeatureLevel
    from medfeat.features import resample_level

    level = FeatureLevel(mask.tensor()[None].float(), mask.grid)
    weights = (resample_level(level, grid, "nearest").data > 0).float()[None]
    return weights if float(weights.sum()) > 0 else None


def _pooled(data: torch.Tensor, grid: Grid, factor: int) -> tuple[torch.Tensor, Grid]:
    """``[1, C, *shape]`` average-pooled by ``factor`` voxels, with the pooled grid."""
    import torch.nn.functional as F

    if factor == 1:
        return data, grid
    pooled = F.avg_pool3d(data, factor, factor)
    shape = tuple(pooled.shape[2:])
    return pooled, grid.with_shape_and_spacing(shape, tuple(s * factor for s in grid.spacing))


def _level(lf, lm, mask, control, factor: int, device):
    """One resolution of the optimisation: pooled features and the fixed->moving voxel maps."""
    import numpy as np
    import torch

    from medfeat.engine.instance_optimisation import Level
    from medfeat.errors import ConfigError

    fixed, grid = _pooled(lf.data[None].float().to(device), lf.grid, factor)
    moving, moving_grid = _pooled(lm.data[None].float().to(device), lm.grid, factor)
    if min(grid.shape) < 4 or min(moving_grid.shape) < 4:
        raise ConfigError(
            f"optimiser adam: pooling the features by {factor} leaves {grid.shape} and "
            f"{moving_grid.shape} voxels, too few to register.",
            remedy="Lower `levels`.",
        )
    if mask is not None and factor > 1:
        mask = torch.nn.functional.avg_pool3d(mask, factor, factor)
    to_moving = np.linalg.inv(moving_grid.array_index_to_world_matrix()[:3, :3]) @ _axes(grid)
    positions = [
        (torch.arange(n, dtype=torch.float32, device=device) + 0.5) * factor - 0.5
        for n in grid.shape
    ]
    return Level(
        fixed=fixed,
        moving=moving,
        base_coords=_voxels_in(grid, moving_grid).to(device, torch.float32),
        mm_to_moving_vox=torch.from_numpy(to_moving).to(device, torch.float32),
        spacing_mm=grid.spacing_array_order,
        bases=control.bases(positions),
        mask=None if mask is None else mask.to(device),
    )


def _voxels_in(grid: Grid, other: Grid) -> torch.Tensor:
    """Voxel coordinates (k, j, i) in ``other`` of the voxels of ``grid``, ``[1, 3, *shape]``."""
    import torch

    from medfeat.engine.warp import identity_grid

    m = torch.from_numpy(grid.transform_matrix("array", "array", to=other))
    index = identity_grid(grid.shape, dtype=torch.float64)
    return torch.einsum("ij,bj...->bi...", m[:3, :3], index) + m[:3, 3].view(1, 3, 1, 1, 1)


def _axes(grid: Grid):
    """World unit vectors of the grid's array axes (k, j, i) as columns."""
    return grid.direction[:, ::-1]


def _field_on(nodes_mm, control, feature_grid: Grid, grid: Grid) -> DisplacementField:
    """The world-mm displacement of the control grid at the voxels of ``grid``.

    Exact (the spline evaluated at each voxel) when ``grid``'s axes are parallel to the feature
    grid's; otherwise evaluated on the feature grid and interpolated (border values outside it).
    """
    import numpy as np
    import torch

    from medfeat.engine.control_grid import evaluate
    from medfeat.engine.warp import sample

    m = grid.transform_matrix("array", "array", to=feature_grid)
    lin = m[:3, :3]
    dev, dt = nodes_mm.device, nodes_mm.dtype
    if np.allclose(lin, np.diag(np.diag(lin)), atol=1e-6):
        positions = [
            torch.arange(n, device=dev, dtype=torch.float64) * lin[a, a] + m[a, 3]
            for a, n in enumerate(grid.shape)
        ]
        disp = evaluate(nodes_mm, control.bases([p.to(dt) for p in positions]))
    else:
        dense = evaluate(nodes_mm, control.dense_bases(dev, dt))
        disp = sample(dense, _voxels_in(grid, feature_grid).to(dev, dt), padding_mode="border")
    world = np.einsum("wa,a...->w...", _axes(feature_grid), disp[0].double().cpu().numpy())
    return DisplacementField(world, grid, "fixed_to_moving")


def _inverse(forward: DisplacementField, iterations: int) -> DisplacementField:
    """The moving->fixed field on the fixed grid's box, by fixed-point inversion."""
    import numpy as np
    import torch

    from medfeat.engine.warp import invert_fixed_point

    disp = torch.from_numpy(np.ascontiguousarray(forward.to_array_voxels())).float()[None]
    inverse = invert_fixed_point(disp, iterations)[0]
    return DisplacementField.from_array_voxels(inverse, forward.grid, "moving_to_fixed")


def make_adam(config: AdamConfig, context) -> AdamRegistration:
    return AdamRegistration(config, context)
