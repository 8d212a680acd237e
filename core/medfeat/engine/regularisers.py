"""Smoothness and consistency penalties for voxel displacement fields ``[B, 3, D, H, W]``.

``spacing`` is the voxel size in mm in ``(D, H, W)`` order; derivatives are taken of the
displacement in mm with respect to position in mm, so results are in physical units
(dimensionless for first derivatives, 1/mm^2 for bending energy).
"""

from __future__ import annotations

import torch
from torch import Tensor

from medfeat.engine.warp import compose

__all__ = ["diffusion", "bending_energy", "inverse_consistency"]


def _to_mm(disp_vox: Tensor, spacing: tuple[float, float, float]) -> Tensor:
    sp = torch.tensor(spacing, device=disp_vox.device, dtype=disp_vox.dtype)
    return disp_vox * sp.view(1, 3, 1, 1, 1)


def diffusion(disp_vox: Tensor, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Tensor:
    """Sum over the three axes of the mean squared forward difference ``(du_mm / dx_mm)^2``."""
    u = _to_mm(disp_vox, spacing)
    total = u.new_zeros(())
    for axis, step in zip((2, 3, 4), spacing, strict=True):
        if u.shape[axis] > 1:
            total = total + (torch.diff(u, dim=axis) / step).pow(2).mean()
    return total


def bending_energy(
    disp_vox: Tensor, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> Tensor:
    """Mean over voxels of ``sum_c [u_xx^2 + u_yy^2 + u_zz^2 + 2 (u_xy^2 + u_xz^2 + u_yz^2)]``
    (second derivatives by repeated central differences, in 1/mm)."""
    u = _to_mm(disp_vox, spacing)
    first = torch.gradient(u, spacing=list(spacing), dim=(2, 3, 4))
    total = u.new_zeros(())
    for a in range(3):
        second = torch.gradient(first[a], spacing=list(spacing[a:]), dim=tuple(range(2 + a, 5)))
        for offset, d2 in enumerate(second):
            weight = 1.0 if offset == 0 else 2.0
            total = total + weight * d2.pow(2).sum(1).mean()
    return total


def inverse_consistency(fwd_vox: Tensor, bwd_vox: Tensor) -> Tensor:
    """Mean squared residual (voxels^2) of both compositions ``fwd then bwd`` and ``bwd then
    fwd``, which vanish when the two fields are exact inverses."""
    r1 = compose(fwd_vox, bwd_vox)
    r2 = compose(bwd_vox, fwd_vox)
    return 0.5 * (r1.pow(2).sum(1).mean() + r2.pow(2).sum(1).mean())
