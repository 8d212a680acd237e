"""Adam instance optimisation of a control-grid displacement with any similarity and regulariser.

Pure tensors: the caller maps geometry to a :class:`Level` per resolution. The displacement is
held in mm along the fixed grid's array axes ``(k, j, i)``; a fixed voxel ``x`` is compared with
the moving features at ``base_coords(x) + mm_to_moving_vox @ u(x)`` (moving voxel coordinates),
which is the world-space warp ``moving(x + u(x))`` even when the two grids differ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from medfeat.engine.control_grid import evaluate
from medfeat.engine.warp import sample

__all__ = ["Level", "optimise_control_grid", "warp_to_fixed"]


@dataclass
class Level:
    """One resolution: features, the fixed->moving voxel map and the control-grid bases."""

    fixed: Tensor  # [1, C, *shape]
    moving: Tensor  # [1, C, *moving_shape]
    base_coords: Tensor  # [1, 3, *shape] moving voxel coordinates (k, j, i) of the fixed voxels
    mm_to_moving_vox: Tensor  # [3, 3] fixed-axis mm (k, j, i) -> moving voxel offset (k, j, i)
    spacing_mm: tuple[float, float, float]  # fixed voxel size along (k, j, i)
    bases: list[Tensor]  # one [shape[a], nodes[a]] matrix per axis
    mask: Tensor | None = None  # [1, 1, *shape] weights of the similarity


def warp_to_fixed(level: Level, disp_mm: Tensor) -> Tensor:
    """Moving features sampled at ``x + u(x)`` for every fixed voxel ``x`` (border padding)."""
    offset = torch.einsum("ij,bj...->bi...", level.mm_to_moving_vox, disp_mm)
    return sample(level.moving, level.base_coords + offset, padding_mode="border")


def optimise_control_grid(
    nodes_mm: Tensor,
    levels: Sequence[Level],
    similarity: Callable,
    regulariser: Callable,
    iterations: int,
    learning_rate_mm: float,
    progress: Callable[[str, float], None] | None = None,
) -> list[dict[str, float]]:
    """Optimise ``nodes_mm`` ``[1, 3, *nodes]`` in place, level by level (coarse first), with Adam
    on ``similarity(warped, fixed, mask) + regulariser(u_vox, spacing_mm)``. A similarity with a
    ``for_spacing(spacing_mm)`` method (lengths in mm) is bound to each level's voxel size first.

    Returns per level the final similarity and regulariser values.
    """
    nodes_mm.requires_grad_(True)
    report = []
    total = max(1, iterations * len(levels))
    for index, level in enumerate(levels):
        spacing = torch.tensor(level.spacing_mm, device=nodes_mm.device, dtype=nodes_mm.dtype)
        bind = getattr(similarity, "for_spacing", None)
        level_similarity = bind(level.spacing_mm) if bind is not None else similarity
        optimiser = torch.optim.Adam([nodes_mm], lr=learning_rate_mm)
        sim_value = penalty = torch.zeros(())
        for step in range(iterations + 1):
            optimiser.zero_grad(set_to_none=True)
            final = step == iterations  # the values of the final field, without a further step
            with torch.set_grad_enabled(not final):
                disp_mm = evaluate(nodes_mm, level.bases)
                sim_value = level_similarity(warp_to_fixed(level, disp_mm), level.fixed, level.mask)
                penalty = regulariser(disp_mm / spacing.view(1, 3, 1, 1, 1), level.spacing_mm)
            if final:
                break
            (sim_value + penalty).backward()
            optimiser.step()
            if progress is not None:
                progress(f"level {index + 1}/{len(levels)}", (index * iterations + step) / total)
        report.append({"similarity": float(sim_value), "regulariser": float(penalty)})
    nodes_mm.requires_grad_(False)
    if progress is not None:
        progress("done", 1.0)
    return report
