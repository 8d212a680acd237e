"""Voxel-space warping, composition, inversion and Jacobians of displacement fields.

Conventions used throughout the engine:

* tensors are in numpy axis order ``(D, H, W) = (k, j, i)``;
* a displacement ``disp`` is ``[B, 3, D, H, W]`` in voxel units with components in the same
  ``(D, H, W)`` order;
* the warp is backward: ``warped(x) = moving(x + u(x))``;
* interpolation uses ``grid_sample(..., align_corners=True)``, i.e. voxel index ``0`` maps to
  the normalised coordinate ``-1`` and index ``n - 1`` to ``+1``; the conversion is
  :meth:`medfeat.geometry.Grid.array_index_to_cube`, and resampling between grids is
  :func:`medfeat.geometry.sampling.resample_tensor`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from medfeat.geometry.grid import Grid
from medfeat.geometry.sampling import resample_tensor

__all__ = [
    "identity_grid",
    "voxel_to_normalised",
    "sample",
    "sample_points",
    "warp",
    "compose",
    "invert_fixed_point",
    "jacobian_determinant_vox",
    "resize_field",
    "trilinear_weights",
    "trilinear_points",
]


def identity_grid(
    shape: tuple[int, int, int],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Voxel coordinates of a grid, ``[1, 3, D, H, W]`` with components ``(k, j, i)``."""
    axes = [torch.arange(n, device=device, dtype=dtype) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=0).unsqueeze(0)


def voxel_to_normalised(coords_vox: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """Map voxel coordinates ``[B, 3, ...]`` (k, j, i) of a grid of ``shape`` to a
    ``grid_sample`` grid ``[B, ..., 3]`` in (x, y, z) = (i, j, k) order, ``align_corners=True``."""
    return Grid.from_shape(shape).array_index_to_cube(torch.movedim(coords_vox, 1, -1))


def sample(
    image: Tensor,
    coords_vox: Tensor,
    mode: str = "bilinear",
    padding_mode: str = "border",
) -> Tensor:
    """Sample ``image`` ``[B, C, D, H, W]`` at voxel coordinates ``coords_vox`` ``[B, 3, d, h, w]``.

    ``mode='bilinear'`` is trilinear interpolation in 3-D. Returns ``[B, C, d, h, w]``.
    """
    grid = voxel_to_normalised(coords_vox.to(image.dtype), tuple(image.shape[-3:]))
    if grid.shape[0] != image.shape[0]:
        grid = grid.expand(image.shape[0], *grid.shape[1:])
    return F.grid_sample(image, grid, mode=mode, padding_mode=padding_mode, align_corners=True)


def sample_points(image: Tensor, points_vox: Tensor, mode: str = "bilinear") -> Tensor:
    """Sample ``image`` ``[1, C, D, H, W]`` at ``N`` voxel points ``[N, 3]`` (k, j, i); returns ``[N, C]``."""
    coords = points_vox.t().reshape(1, 3, -1, 1, 1)
    out = sample(image, coords, mode=mode)
    return out.reshape(image.shape[1], -1).t()


def warp(
    image: Tensor,
    disp_vox: Tensor,
    mode: str = "bilinear",
    padding_mode: str = "border",
) -> Tensor:
    """Backward-warp ``image`` ``[B, C, D, H, W]`` with ``disp_vox`` ``[B, 3, D, H, W]``:
    ``out(x) = image(x + u(x))``. ``mode`` is ``'bilinear'`` (trilinear) or ``'nearest'``."""
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    grid = identity_grid(tuple(disp_vox.shape[-3:]), disp_vox.device, disp_vox.dtype)
    return sample(image, grid + disp_vox, mode=mode, padding_mode=padding_mode)


def compose(first: Tensor, second: Tensor) -> Tensor:
    """Displacement of applying ``first`` then ``second``: ``u(x) = a(x) + b(x + a(x))``.

    If ``first`` maps fixed to intermediate and ``second`` intermediate to moving, the result maps
    fixed to moving, so ``warp(moving, compose(a, b)) == warp(warp(moving, b), a)`` up to
    interpolation.
    """
    return first + warp(second, first)


def invert_fixed_point(disp_vox: Tensor, iterations: int = 20) -> Tensor:
    """Approximate inverse ``v`` of ``x -> x + u(x)`` by the fixed point ``v(x) = -u(x + v(x))``.

    Converges for fields whose voxel Jacobian has ``|grad u| < 1`` (no folding).
    """
    inv = -disp_vox
    for _ in range(iterations):
        inv = -warp(disp_vox, inv)
    return inv


def jacobian_determinant_vox(disp_vox: Tensor) -> Tensor:
    """Determinant of the Jacobian of ``x -> x + u(x)`` for a displacement in voxel units,
    ``[B, D, H, W]`` (central differences).

    For voxel-unit displacements the determinant does not depend on the voxel spacing; for a
    :class:`~medfeat.geometry.DisplacementField` in world mm use
    :func:`medfeat.metrics.jacobian.jacobian_determinant_mm`.
    """
    grads = torch.gradient(disp_vox, dim=(2, 3, 4))  # d/dk, d/dj, d/di, each [B, 3, D, H, W]
    jac = torch.stack(grads, dim=2)  # [B, comp, axis, D, H, W]
    eye = torch.eye(3, device=disp_vox.device, dtype=disp_vox.dtype).view(1, 3, 3, 1, 1, 1)
    jac = (jac + eye).permute(0, 3, 4, 5, 1, 2)
    return torch.linalg.det(jac)


def resize_field(disp_vox: Tensor, factor: float, shape: tuple[int, int, int]) -> Tensor:
    """Resample a voxel displacement from a grid with voxel size ``factor`` (in target voxels)
    to a grid of ``shape``, rescaling the vectors by ``factor``.

    Coarse voxel ``c`` is centred at target coordinate ``(c + 0.5) * factor - 0.5`` (the
    convention of ``avg_pool3d`` with stride ``factor``, i.e. voxel corners aligned); values
    beyond the outer centres are extended from the border.
    """
    source_shape = tuple(disp_vox.shape[-3:])
    if factor == 1.0 and source_shape == tuple(shape):
        return disp_vox.clone()
    if factor > 1.0 and float(factor).is_integer():
        return _upsample_field(disp_vox, int(factor), shape) * factor
    target = Grid.from_shape(shape)
    coarse = target.with_shape_and_spacing(source_shape, (float(factor),) * 3)
    return resample_tensor(disp_vox, coarse, target, padding="border") * factor


def _upsample_field(disp_vox: Tensor, factor: int, shape: tuple[int, int, int]) -> Tensor:
    """:func:`resize_field`'s resampling for a whole ``factor``: ``interpolate`` places coarse
    voxel ``c`` at ``(c + 0.5) * factor - 0.5`` too (``align_corners=False``) and clamps beyond
    the outer centres; the rows past ``factor`` times the coarse shape repeat the border."""
    up = F.interpolate(disp_vox, scale_factor=factor, mode="trilinear", align_corners=False)
    extra = [max(0, n - m) for n, m in zip(shape, up.shape[-3:], strict=True)]
    if any(extra):
        up = F.pad(up, (0, extra[2], 0, extra[1], 0, extra[0]), mode="replicate")
    return up[..., : shape[0], : shape[1], : shape[2]]


_CORNERS = ((0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1), (1, 0, 0), (1, 0, 1), (1, 1, 0), (1, 1, 1))


def trilinear_weights(points_vox: Tensor, shape: tuple[int, int, int]) -> tuple[Tensor, Tensor]:
    """Flat corner indices ``[N, 8]`` and trilinear weights ``[N, 8]`` of ``points_vox``
    ``[N, 3]`` (k, j, i) on a grid of ``shape``; points are clamped to the grid (border mode).

    The weights are differentiable with respect to ``points_vox`` inside the grid.
    """
    size = torch.tensor(shape, device=points_vox.device, dtype=points_vox.dtype)
    pts = torch.minimum(points_vox.clamp_min(0), size - 1)
    base = torch.minimum(pts.detach().floor(), (size - 2).clamp_min(0))
    frac = pts - base
    base = base.long()
    strides = (shape[1] * shape[2], shape[2], 1)
    flat = base[:, 0] * strides[0] + base[:, 1] * strides[1] + base[:, 2]
    idx, wts = [], []
    for corner in _CORNERS:
        off = sum(c * st for c, st, n in zip(corner, strides, shape, strict=True) if n > 1)
        w = None
        for axis, c in enumerate(corner):
            f = frac[:, axis] if c else 1.0 - frac[:, axis]
            w = f if w is None else w * f
        idx.append(flat + off)
        wts.append(w)
    return torch.stack(idx, dim=1), torch.stack(wts, dim=1)


def trilinear_points(volume_cl: Tensor, points_vox: Tensor) -> Tensor:
    """Trilinear samples of a channels-last volume ``[D, H, W, C]`` at ``points_vox`` ``[N, 3]``
    (k, j, i; border mode). Returns ``[N, C]``; differentiable w.r.t. points and volume.

    Equivalent to :func:`sample_points` but gathers contiguous channel vectors, which is much
    faster on CPU for many channels.
    """
    if not volume_cl.requires_grad:
        from medfeat.engine.point_sampling import sample_fixed_volume

        return sample_fixed_volume(volume_cl, points_vox)
    d, h, w, c = volume_cl.shape
    idx, wts = trilinear_weights(points_vox, (d, h, w))
    vals = volume_cl.reshape(-1, c).index_select(0, idx.reshape(-1)).view(*idx.shape, c)
    return (vals * wts.unsqueeze(-1)).sum(1)
