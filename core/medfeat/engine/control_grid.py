"""Displacements parametrised on a regular control grid, upsampled separably (B-spline or linear).

The control grid is laid over a dense grid of ``shape`` voxels, axis by axis: node ``l`` sits at
voxel coordinate ``(l - pad) * spacing_vox`` with ``pad = 1`` for cubic B-splines (one node
beyond each end, so every voxel has full support) and ``0`` for linear interpolation. The
displacement at any voxel coordinate ``x`` along an axis is ``sum_l B((x - t_l) / spacing) c_l``,
so it can be evaluated at the voxels of the dense grid and of any grid whose axes are parallel to
it (a pooled pyramid level, an image grid under coarser features) through one small basis matrix
per axis. Node spacings need not be whole voxels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ControlGrid", "bspline3", "evaluate", "hat"]


def bspline3(t: Tensor) -> Tensor:
    """Cubic B-spline kernel (support ``|t| < 2``, partition of unity on integer shifts)."""
    a = t.abs()
    inner = 2.0 / 3.0 - a**2 + 0.5 * a**3
    outer = (2.0 - a).clamp_min(0) ** 3 / 6.0
    return torch.where(a < 1, inner, outer)


def hat(t: Tensor) -> Tensor:
    """Linear interpolation kernel (support ``|t| < 1``)."""
    return (1.0 - t.abs()).clamp_min(0)


_KERNELS = {"cubic-bspline": (bspline3, 1), "linear": (hat, 0)}


@dataclass(frozen=True)
class ControlGrid:
    """Nodes over a dense grid of ``shape`` voxels (numpy order), ``spacing_vox`` apart per axis."""

    shape: tuple[int, ...]
    spacing_vox: tuple[float, ...]
    interpolation: str = "cubic-bspline"

    def __post_init__(self) -> None:
        if self.interpolation not in _KERNELS:
            raise ValueError(f"interpolation must be one of {sorted(_KERNELS)}")
        if any(s <= 0 for s in self.spacing_vox):
            raise ValueError(f"control spacing must be positive, got {self.spacing_vox} voxels")

    @property
    def nodes(self) -> tuple[int, ...]:
        """Number of nodes per axis: enough to cover voxels ``0 .. n - 1`` with full support."""
        pad = _KERNELS[self.interpolation][1]
        return tuple(
            math.ceil((n - 1) / s - 1e-6) + 1 + 2 * pad
            for n, s in zip(self.shape, self.spacing_vox, strict=True)
        )

    def basis(self, axis: int, positions_vox: Tensor) -> Tensor:
        """``[len(positions), nodes]`` weights of the nodes along ``axis`` at voxel coordinates
        ``positions_vox`` (clamped to ``0 .. n - 1``: constant beyond the dense grid)."""
        kernel, pad = _KERNELS[self.interpolation]
        x = positions_vox.clamp(0, self.shape[axis] - 1)
        s = self.spacing_vox[axis]
        t = (torch.arange(self.nodes[axis], dtype=x.dtype, device=x.device) - pad) * s
        return kernel((x[:, None] - t[None, :]) / s)

    def bases(self, positions_vox: Sequence[Tensor]) -> list[Tensor]:
        """One basis matrix per axis for voxel coordinates given axis by axis."""
        return [self.basis(a, p) for a, p in enumerate(positions_vox)]

    def dense_bases(self, device=None, dtype: torch.dtype = torch.float32) -> list[Tensor]:
        """Basis matrices at the voxels of the dense grid itself."""
        return self.bases([torch.arange(n, device=device, dtype=dtype) for n in self.shape])

    def zeros(self, channels: int = 3, device=None, dtype: torch.dtype = torch.float32) -> Tensor:
        """Zero node values ``[1, channels, *nodes]``."""
        return torch.zeros((1, channels, *self.nodes), device=device, dtype=dtype)


def evaluate(nodes: Tensor, bases: Sequence[Tensor]) -> Tensor:
    """Values ``[B, C, *points]`` of node values ``[B, C, *nodes]`` at the points of ``bases``
    (one ``[points, nodes]`` matrix per axis); differentiable in the node values."""
    out = nodes
    for axis, w in enumerate(bases):
        out = torch.movedim(torch.tensordot(out, w, dims=([2 + axis], [1])), -1, 2 + axis)
    return out
