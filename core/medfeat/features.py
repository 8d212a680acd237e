"""Feature-map utilities shared by transforms and optimisers: world-aware resampling, normalisation,
level fusion and joint PCA. Functions are stateless; tensors are ``[C, *spatial]`` in numpy order."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medfeat.components import FeatureLevel, FeatureMap
from medfeat.geometry import Grid


def target_to_source_coords(target: Grid, source: Grid) -> torch.Tensor:
    """For every voxel of ``target``, its continuous numpy-order index in ``source`` ``[*shape, ndim]``."""
    m = np.linalg.inv(source.array_index_to_world_matrix()) @ target.array_index_to_world_matrix()
    axes = [torch.arange(s, dtype=torch.float64) for s in target.shape]
    idx = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
    mt = torch.from_numpy(m)
    return idx @ mt[:-1, :-1].T + mt[:-1, -1]


def index_to_grid_sample(coords: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Numpy-order voxel indices -> ``grid_sample`` coordinates (``align_corners=True``, xyz order)."""
    sizes = torch.tensor([max(s - 1, 1) for s in shape], dtype=coords.dtype, device=coords.device)
    return (2.0 * coords / sizes - 1.0).flip(-1)


def resample_level(level: FeatureLevel, grid: Grid, mode: str = "bilinear") -> FeatureLevel:
    """Resample a feature level onto ``grid`` through world space (zero outside the source)."""
    if level.grid.same_as(grid):
        return level
    coords = target_to_source_coords(grid, level.grid).to(level.data.device, torch.float32)
    sample = index_to_grid_sample(coords, level.grid.shape)[None]
    data = F.grid_sample(
        level.data[None].float(), sample, mode=mode, padding_mode="zeros", align_corners=True
    )[0]
    return FeatureLevel(data.to(level.data.dtype), grid, level.name)


def l2_normalise(data: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Unit length along channels (dim 0)."""
    return data / data.norm(dim=0, keepdim=True).clamp_min(eps)


def fuse_levels(
    fmap: FeatureMap, grid: Grid, weights: Sequence[float] | None = None, normalise: bool = True
) -> FeatureMap:
    """Resample every level to ``grid``, L2-normalise each (optionally), weight and concatenate."""
    weights = list(weights) if weights is not None else [1.0] * len(fmap.levels)
    parts = []
    for level, w in zip(fmap.levels, weights, strict=True):
        data = resample_level(level, grid).data
        parts.append(w * (l2_normalise(data) if normalise else data))
    return FeatureMap([FeatureLevel(torch.cat(parts, 0), grid, "fused")], source=fmap.source)


def joint_pca(
    datas: Sequence[torch.Tensor],
    dims: int,
    masks: Sequence[torch.Tensor | None] | None = None,
    centre: bool = False,
    max_samples: int = 200_000,
    seed: int = 0,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Project several ``[C, *spatial]`` tensors onto the top ``dims`` principal axes of their joint tokens.

    The axes are fitted on (at most ``max_samples``) tokens of all inputs together, restricted to
    ``masks`` where given. ``centre=False`` projects without subtracting the mean, as DINO-Reg does.
    Returns the projected tensors and the ``[C, dims]`` basis.
    """
    gen = torch.Generator().manual_seed(seed)
    tokens = []
    for i, data in enumerate(datas):
        flat = data.reshape(data.shape[0], -1).T.float()
        if masks is not None and masks[i] is not None:
            flat = flat[masks[i].reshape(-1) > 0]
        tokens.append(flat)
    joint = torch.cat(tokens, 0)
    if joint.shape[0] > max_samples:
        joint = joint[torch.randperm(joint.shape[0], generator=gen)[:max_samples]]
    dims = min(dims, joint.shape[1])
    mean = joint.mean(0, keepdim=True)
    torch.manual_seed(seed)
    _, _, v = torch.pca_lowrank(joint, q=dims, center=True)
    basis = v[:, :dims]
    out = []
    for data in datas:
        flat = data.reshape(data.shape[0], -1).T.float()
        if centre:
            flat = flat - mean
        out.append((flat @ basis).T.reshape(dims, *data.shape[1:]))
    return out, basis
