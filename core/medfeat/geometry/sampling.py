"""The torch resampler: a tensor on one grid, sampled at the voxels of another, through world space."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medfeat.errors import ConfigError
from medfeat.geometry.grid import Grid

if TYPE_CHECKING:
    import torch

#: interpolation name -> ``grid_sample`` mode
MODES = {"linear": "bilinear", "nearest": "nearest"}
PADDINGS = ("zeros", "border")


def resample_tensor(
    data: torch.Tensor,
    source: Grid,
    target: Grid,
    mode: str = "linear",
    padding: str = "zeros",
    world_affine=None,
) -> torch.Tensor:
    """``data`` on grid ``source``, sampled at every voxel centre of grid ``target``.

    ``world_affine`` (a homogeneous world matrix, LPS mm) maps each target voxel's world point
    ``x`` to the point ``A @ x`` looked up in ``source`` (e.g. a fixed->moving pre-alignment when
    ``target`` is the fixed image's grid and ``source`` the moving image's); none = identity.

    ``data`` is ``[C, *source.shape]`` or ``[B, C, *source.shape]`` in numpy axis order; the result
    has the same leading dimensions and ``target.shape``. Both grids may have any spacing, origin
    and direction: each target voxel is placed in world space and looked up in ``source``.
    ``mode`` is ``linear`` (bi/trilinear) or ``nearest``; points outside ``source`` get ``0``
    (``padding="zeros"``) or the nearest border value (``"border"``). Non-float data is sampled as
    float32; float data keeps its dtype.

    Positions are computed in float64 (``target`` array index -> ``source`` array index) and
    normalised for ``grid_sample`` in the data's dtype by :meth:`Grid.array_index_to_cube`, the same
    normalisation the voxel-space warps of the engine use.
    """
    import torch
    import torch.nn.functional as F

    if mode not in MODES:
        raise ConfigError(
            f"Unknown resampling mode {mode!r}.", remedy=f"Use one of {', '.join(MODES)}."
        )
    if padding not in PADDINGS:
        raise ConfigError(
            f"Unknown padding {padding!r}.", remedy=f"Use one of {', '.join(PADDINGS)}."
        )
    n = source.ndim
    if (
        target.ndim != n
        or tuple(data.shape[-n:]) != source.shape
        or data.dim() not in (n + 1, n + 2)
    ):
        raise ConfigError(
            f"Cannot resample data of shape {tuple(data.shape)} from a {source.ndim}D grid of shape "
            f"{source.shape} onto a {target.ndim}D grid.",
            remedy="Pass [C, *source.shape] or [B, C, *source.shape] data and grids of equal dimension.",
        )
    batched = data.dim() == n + 2
    x = data if batched else data[None]
    if not x.is_floating_point():
        x = x.float()
    import numpy as np

    if world_affine is None:
        m_np = target.transform_matrix("array", "array", to=source)
    else:
        a = np.asarray(world_affine, dtype=np.float64)
        m_np = np.linalg.inv(source.to_world_matrix("array")) @ a @ target.to_world_matrix("array")
    m = torch.from_numpy(m_np)
    axes = [torch.arange(s, dtype=torch.float64) for s in target.shape]
    index = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
    index = (index @ m[:-1, :-1].T + m[:-1, -1]).to(x.device, x.dtype)
    coords = source.array_index_to_cube(index)[None].expand(x.shape[0], *index.shape)
    out = F.grid_sample(x, coords, mode=MODES[mode], padding_mode=padding, align_corners=True)
    return out if batched else out[0]
