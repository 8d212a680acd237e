"""Feature-map utilities shared by transforms and optimisers: world-aware resampling, normalisation,
level fusion and joint PCA. Functions are stateless; tensors are ``[C, *spatial]`` in numpy order."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from medfeat.components import FeatureLevel, FeatureMap
from medfeat.geometry import Grid
from medfeat.geometry.sampling import resample_tensor


def resample_level(level: FeatureLevel, grid: Grid, mode: str = "linear") -> FeatureLevel:
    """Resample a feature level onto ``grid`` through world space (zero outside the source).

    ``mode`` is ``linear`` or ``nearest``; sampling is in float32, the result keeps the level's dtype.
    """
    if level.grid.same_as(grid):
        return level
    data = resample_tensor(level.data.float(), level.grid, grid, mode=mode, padding="zeros")
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
