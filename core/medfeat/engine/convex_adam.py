"""ConvexAdam: coupled convex discrete optimisation followed by Adam instance optimisation.

Siebert, Hansen, Heinrich, "Fast 3D registration with accurate optimisation and little
learning for Learn2Reg 2021" (MICCAI 2021 workshops). This is a from-scratch, weight-free,
CPU-friendly implementation working on any dense features (e.g. :func:`mind_ssc`).

Conventions: tensors in ``(D, H, W)`` order, displacements ``[1, 3, D, H, W]`` in voxels with
``(D, H, W)`` components, ``warped(x) = moving(x + u(x))``. The feature grid is isotropic with
``spacing_mm`` (the registration pipeline resamples both images onto such a working grid); the
options are lengths in mm, turned into whole voxels by
:func:`~medfeat.engine.convex_adam_config.voxel_plan`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from medfeat.engine.convex_adam_config import ConvexAdamConfig, VoxelPlan, voxel_plan
from medfeat.engine.regularisers import diffusion
from medfeat.engine.warp import (
    identity_grid,
    invert_fixed_point,
    resize_field,
    trilinear_points,
    trilinear_weights,
    warp,
)
from medfeat.errors import ConfigError

__all__ = [
    "ConvexAdamConfig",
    "convex_adam",
    "displacement_candidates",
    "ssd_cost_volume",
    "coupled_convex",
    "make_inverse_consistent",
    "smooth_field",
]

Progress = Callable[[str, float], None]


def _report(progress: Progress | None, step: str, fraction: float) -> None:
    if progress is not None:
        progress(step, float(fraction))


def smooth_field(field: Tensor, kernel: int = 3, passes: int = 1) -> Tensor:
    """Box-smooth ``[B, C, D, H, W]`` ``passes`` times with odd ``kernel`` (replicate border)."""
    if kernel <= 1:
        return field
    r = kernel // 2
    for _ in range(passes):
        field = F.avg_pool3d(F.pad(field, (r,) * 6, mode="replicate"), kernel, stride=1)
    return field


def displacement_candidates(radius: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """All integer displacements in ``[-radius, radius]^3``, ``[K, 3]`` (D, H, W), row-major."""
    r = torch.arange(-radius, radius + 1, dtype=dtype)
    grid = torch.meshgrid(r, r, r, indexing="ij")
    return torch.stack(grid, dim=-1).reshape(-1, 3)


def _smooth_cost(cost: Tensor, passes: int) -> Tensor:
    """Apply ``passes`` 3-tap box filters along each spatial axis of ``[d, h, w, K]`` at once,
    i.e. the separable kernel ``[1, 1, 1]^{*passes} / 3^passes`` (replicate border)."""
    if passes <= 0:
        return cost
    weights = [1.0]
    for _ in range(passes):  # convolve with [1, 1, 1] / 3
        padded = [0.0, 0.0, *weights, 0.0, 0.0]
        weights = [sum(padded[i : i + 3]) / 3.0 for i in range(len(weights) + 2)]
    r = passes
    for dim in range(3):
        n = cost.shape[dim]
        idx = torch.arange(-r, n + r, device=cost.device).clamp_(0, n - 1)
        padded = cost.index_select(dim, idx)
        out = padded.narrow(dim, 0, n).mul(weights[0])
        for o in range(1, 2 * r + 1):
            out.add_(padded.narrow(dim, o, n), alpha=weights[o])
        del padded
        cost = out
    return cost


def ssd_cost_volume(
    fixed: Tensor, moving: Tensor, radius: int, smoothing_passes: int = 2
) -> Tensor:
    """Dense SSD cost between ``fixed`` and ``moving`` ``[1, C, d, h, w]``, ``[d, h, w, K]``
    (voxel-major) over the candidates of :func:`displacement_candidates` (``moving`` is
    zero-padded outside its grid), summed over channels and smoothed with ``smoothing_passes``
    3^3 box filters (replicate border).

    The feature dot products are computed row by row as small batched matrix products
    ``[w, C] @ [C, w + 2r]`` whose band of width ``2r + 1`` holds the candidates.
    """
    _, c, d, h, w = fixed.shape
    n = 2 * radius + 1
    w2 = w + 2 * radius
    mov = F.pad(moving, (radius,) * 6)[0]  # [C, d + 2r, h + 2r, w + 2r]
    fix_rows = fixed[0].permute(1, 2, 3, 0).reshape(d * h, w, c).contiguous()
    mov_rows = mov.permute(1, 2, 0, 3).contiguous()  # [D', H', C, W']
    fix_sq = fixed[0].pow(2).sum(0)  # [d, h, w]
    mov_sq = mov.pow(2).sum(0)  # [D', H', W']
    cost = fixed.new_empty((d, h, w, n, n, n))
    for a in range(n):
        for b in range(n):
            rows = mov_rows[a : a + d, b : b + h].reshape(d * h, c, w2)
            full = torch.bmm(fix_rows, rows)  # [d*h, w, w2]
            band = full.as_strided((d * h, w, n), (w * w2, w2 + 1, 1)).view(d, h, w, n)
            sq = mov_sq[a : a + d, b : b + h].unfold(-1, w, 1).transpose(-1, -2)  # [d, h, w, n]
            cost[:, :, :, a, b, :] = sq - 2.0 * band + fix_sq.unsqueeze(-1)
    return _smooth_cost(cost.view(d, h, w, n**3), smoothing_passes)


def coupled_convex(
    cost: Tensor,
    candidates: Tensor,
    schedule: Sequence[float],
    progress: Progress | None = None,
    chunk: int = 4096,
) -> Tensor:
    """Coupled convex optimisation of a discrete cost ``[d, h, w, K]`` over ``candidates``
    ``[K, 3]``. Alternates a per-voxel ``argmin_k cost_k + lambda * |c_k - v|^2`` with 3^3 box
    smoothing (replicate border) of the selected field ``v`` for each ``lambda`` of
    ``schedule``; the initial ``v`` is the smoothed unregularised argmin.

    Returns ``v`` as ``[1, 3, d, h, w]`` in the units of ``candidates``.
    """
    d, h, w, k = cost.shape
    flat = cost.reshape(-1, k)
    cand = candidates.to(cost.dtype)
    cand_sq = cand.pow(2).sum(1)

    def select(idx: Tensor) -> Tensor:
        v = cand[idx].t().reshape(1, 3, d, h, w)
        return smooth_field(v, 3, 1)

    field = select(flat.argmin(1))
    idx = torch.empty(flat.shape[0], dtype=torch.long, device=cost.device)
    buf = cost.new_empty((chunk, k))
    for step, lam in enumerate(schedule):
        v = field.reshape(3, -1).t()
        # |c - v|^2 = |c|^2 - 2 c.v + const(k)
        for s in range(0, flat.shape[0], chunk):
            e = min(s + chunk, flat.shape[0])
            out = buf[: e - s]
            torch.addmm(flat[s:e], v[s:e], cand.t(), alpha=-2.0 * lam, out=out)
            out.add_(cand_sq, alpha=lam)
            idx[s:e] = out.argmin(1)
        field = select(idx)
        _report(progress, "coupled_convex", (step + 1) / max(len(schedule), 1))
    return field


def make_inverse_consistent(
    fwd: Tensor, bwd: Tensor, iterations: int = 15
) -> tuple[Tensor, Tensor]:
    """Symmetrise a forward/backward pair (voxel units of their own grid) by iterating
    ``fwd <- (fwd - bwd o (x + fwd)) / 2`` and vice versa (simultaneous updates)."""
    for _ in range(iterations):
        fwd, bwd = 0.5 * (fwd - warp(bwd, fwd)), 0.5 * (bwd - warp(fwd, bwd))
    return fwd, bwd


def _coarse_step(
    feat_fixed: Tensor,
    feat_moving: Tensor,
    config: ConvexAdamConfig,
    plan: VoxelPlan,
    progress: Progress | None,
) -> Tensor:
    """Coarse field ``[1, 3, d, h, w]`` in coarse grid units."""
    g = plan.grid
    fix_c = F.avg_pool3d(feat_fixed, g, stride=g)
    mov_c = F.avg_pool3d(feat_moving, g, stride=g)
    cand = displacement_candidates(plan.radius, fix_c.dtype).to(fix_c.device)
    passes = config.cost_smoothing_passes
    cost = ssd_cost_volume(fix_c, mov_c, plan.radius, passes)
    _report(progress, "cost_volume", 0.5 if config.inverse_consistent else 1.0)
    fwd = coupled_convex(cost, cand, config.coupling_schedule, progress)
    del cost
    if not config.inverse_consistent:
        return fwd
    cost = ssd_cost_volume(mov_c, fix_c, plan.radius, passes)
    _report(progress, "cost_volume", 1.0)
    bwd = coupled_convex(cost, cand, config.coupling_schedule, progress)
    del cost
    fwd, _ = make_inverse_consistent(fwd, bwd, config.ic_iterations)
    _report(progress, "inverse_consistency", 1.0)
    return fwd


class _Adam:
    """Minimal Adam (Kingma & Ba) for one tensor; avoids importing ``torch.optim``, whose
    first use pulls in ``torch._dynamo`` (seconds of start-up on a small CPU)."""

    def __init__(self, param: Tensor, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.param, self.lr, self.betas, self.eps = param, lr, betas, eps
        self.m = torch.zeros_like(param)
        self.v = torch.zeros_like(param)
        self.t = 0

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        self.t += 1
        g = self.param.grad
        self.m.mul_(b1).add_(g, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (self.v / (1 - b2**self.t)).sqrt_().add_(self.eps)
        self.param.addcdiv_(self.m, denom, value=-self.lr / (1 - b1**self.t))


class _Subsets:
    """Subsets of at most ``size`` rows of aligned ``arrays``: the rows are dealt into
    ``ceil(rows / size)`` interleaved subsets (every n-th row, from offset 0 to n - 1), taken in
    a random order drawn afresh for each pass, so every row is used once per pass, each subset
    covers the whole mask evenly, and the rows stay in raster order (cache-friendly gathers)."""

    def __init__(self, arrays: tuple[Tensor, ...], size: int, generator: torch.Generator):
        self.arrays, self.generator = arrays, generator
        rows = arrays[0].shape[0]
        self.count = max(1, -(-rows // max(size, 1)))
        self.order: list[int] = []

    def next(self) -> tuple[Tensor, ...]:
        if self.count == 1:
            return self.arrays
        if not self.order:
            self.order = torch.randperm(self.count, generator=self.generator).tolist()
        k = self.order.pop()
        return tuple(a[k :: self.count] for a in self.arrays)


def _instance_optimisation(
    feat_fixed: Tensor,
    feat_moving: Tensor,
    init_io: Tensor,
    config: ConvexAdamConfig,
    mask_io: Tensor | None,
    progress: Progress | None,
    *,
    smoothing_kernel: int,
    grid_spacing: int,
    lr: float,
    iterations: int,
    max_points: int,
    seed: int,
    resample: bool = True,
    step_name: str = "instance_optimisation",
) -> Tensor:
    """Adam refinement at io resolution.

    The field is a control grid with spacing ``c = grid_spacing`` (io voxels), smoothed
    every iteration and trilinearly interpolated; the SSD data term is evaluated at a random
    subset of at most ``max_points`` io voxels (inside ``mask_io`` when given): one of
    :class:`_Subsets`' interleaved subsets per step when ``resample``, else one random subset
    drawn once; the generator is seeded with ``seed``.
    ``init_io`` and the result are ``[1, 3, *shape_io]`` in io voxels.
    """
    shape_io = tuple(init_io.shape[-3:])
    c = grid_spacing
    ctrl_shape = tuple(-(-n // c) for n in shape_io)
    # control-grid values are kept in io voxels (resize_field rescales vectors, undo that)
    init = resize_field(init_io, 1.0 / c, ctrl_shape) * c if c > 1 else init_io.clone()
    param = init.detach().requires_grad_(True)
    adam = _Adam(param, lr)

    # candidate sample points (io voxel coordinates) and their fixed features
    if mask_io is not None:
        pts = torch.nonzero(mask_io[0, 0] > 0.5).to(feat_fixed.dtype)
    else:
        pts = identity_grid(shape_io, feat_fixed.device, feat_fixed.dtype).reshape(3, -1).t()
    fixed_cl = feat_fixed[0].permute(1, 2, 3, 0).contiguous()
    moving_cl = feat_moving[0].permute(1, 2, 3, 0).contiguous()
    strides = torch.tensor([shape_io[1] * shape_io[2], shape_io[2], 1], device=pts.device)
    fixed_pts = fixed_cl.reshape(-1, fixed_cl.shape[-1])[(pts.long() * strides).sum(1)]  # [P, C]
    ctrl_idx, ctrl_w = trilinear_weights((pts + 0.5) / c - 0.5, ctrl_shape)  # fixed weights
    n_pts = pts.shape[0]
    m = n_pts if max_points <= 0 else min(max_points, n_pts)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    if m < n_pts and not resample:
        keep = torch.randperm(n_pts, generator=gen)[:m].to(pts.device)
        pts, fixed_pts, ctrl_idx, ctrl_w = pts[keep], fixed_pts[keep], ctrl_idx[keep], ctrl_w[keep]
        n_pts = m

    def smoothed(p: Tensor) -> Tensor:
        return smooth_field(p, smoothing_kernel, config.field_smoothing_passes)

    subsets = _Subsets((pts, fixed_pts, ctrl_idx, ctrl_w), m, gen)
    for it in range(iterations):
        param.grad = None
        field = smoothed(param)
        p_io, f_pts, idx, w = subsets.next()
        flat = field.reshape(3, -1).t().contiguous()  # [control points, 3]
        corners = flat.index_select(0, idx.reshape(-1)).view(*idx.shape, 3)  # [M, 8, 3]
        u = torch.bmm(w.unsqueeze(1), corners).squeeze(1)
        warped = trilinear_points(moving_cl, p_io + u)  # [M, C]
        data = (warped - f_pts).pow(2).sum(1).mean()
        reg = diffusion(field / c)  # squared gradient in io voxels per io voxel
        loss = data + config.smoothness_weight * reg
        loss.backward()
        adam.step()
        _report(progress, step_name, (it + 1) / iterations)
    with torch.no_grad():
        field = smoothed(param).detach()
        return resize_field(field / c, float(c), shape_io) if c > 1 else field


def check_plan(plan: VoxelPlan, shape: tuple[int, ...]) -> None:
    """Refuse lengths that leave too few voxels on a feature grid of ``shape`` (clear message)."""
    s = plan.spacing_mm
    extent = min(shape) * s
    for option, unit in (
        ("grid_spacing_mm", plan.grid),
        ("io_spacing_mm", plan.io),
        ("inverse_spacing_mm", plan.inverse),
    ):
        if min(shape) // unit < 2:
            raise ConfigError(
                f"convex-adam: {option} = {unit * s:g} mm leaves fewer than 2 voxels along the "
                f"shortest axis of the {extent:g} mm feature grid ({'x'.join(map(str, shape))} "
                f"voxels of {s:g} mm).",
                remedy=f"Set {option} to at most {extent / 2:g} mm (a few times the working "
                "spacing is usual).",
            )


def convex_adam(
    feat_fixed: Tensor,
    feat_moving: Tensor,
    config: ConvexAdamConfig | None = None,
    mask_fixed: Tensor | None = None,
    progress: Progress | None = None,
    *,
    seed: int = 0,
    spacing_mm: float = 1.0,
) -> tuple[Tensor, Tensor | None]:
    """Register ``feat_moving`` to ``feat_fixed`` (both ``[1, C, D, H, W]`` on the same isotropic
    grid of ``spacing_mm``; the lengths of ``config`` are in mm).

    Returns ``(disp_fwd, disp_bwd)``: ``disp_fwd`` ``[1, 3, D, H, W]`` in voxels with
    ``warp(moving, disp_fwd) ~ fixed``; ``disp_bwd`` is its inverse (moving to fixed) when
    ``config.compute_inverse`` else ``None``. ``mask_fixed`` (``[1, 1, D, H, W]``, values in
    [0, 1]) weights the data term of the instance optimisation; ``seed`` makes its random voxel
    subsets reproducible. ``progress(step, fraction)`` is called with steps ``cost_volume``,
    ``coupled_convex``, ``inverse_consistency``, ``instance_optimisation``, ``inverse``.
    """
    config = config or ConvexAdamConfig()
    if feat_fixed.shape != feat_moving.shape or feat_fixed.dim() != 5 or feat_fixed.shape[0] != 1:
        raise ValueError(
            f"expected equal [1, C, D, H, W] features, got {tuple(feat_fixed.shape)} and "
            f"{tuple(feat_moving.shape)}"
        )
    feat_fixed = feat_fixed.float()
    feat_moving = feat_moving.float()
    shape = tuple(feat_fixed.shape[-3:])
    plan = voxel_plan(config, spacing_mm)
    check_plan(plan, shape)
    g, f = plan.grid, plan.io

    with torch.no_grad():
        coarse = _coarse_step(feat_fixed, feat_moving, config, plan, progress)

    if config.adam_iterations > 0:
        shape_io = tuple(n // f for n in shape)
        with torch.no_grad():
            fix_io = F.avg_pool3d(feat_fixed, f, stride=f) if f > 1 else feat_fixed
            mov_io = F.avg_pool3d(feat_moving, f, stride=f) if f > 1 else feat_moving
            init_io = resize_field(coarse, g / f, shape_io)
            mask_io = None
            if mask_fixed is not None:
                m = mask_fixed.float()
                mask_io = F.avg_pool3d(m, f, stride=f) if f > 1 else m
        with torch.enable_grad():
            field_io = _instance_optimisation(
                fix_io,
                mov_io,
                init_io,
                config,
                mask_io,
                progress,
                smoothing_kernel=plan.smoothing_kernel,
                grid_spacing=plan.io_control,
                lr=plan.lr,
                iterations=config.adam_iterations,
                max_points=config.io_max_points,
                seed=seed,
            )
        disp = resize_field(field_io, float(f), shape)
    else:
        disp = resize_field(coarse, float(g), shape)

    if config.fine_iterations > 0:
        with torch.enable_grad():
            disp = _instance_optimisation(
                feat_fixed,
                feat_moving,
                disp,
                config,
                mask_fixed.float() if mask_fixed is not None else None,
                progress,
                smoothing_kernel=plan.smoothing_kernel,
                grid_spacing=plan.fine_control,
                lr=plan.fine_lr,
                iterations=config.fine_iterations,
                max_points=config.fine_max_points,
                seed=seed,
                resample=False,
                step_name="fine_optimisation",
            )

    bwd = None
    if config.compute_inverse:
        with torch.no_grad():
            r = plan.inverse
            low = F.avg_pool3d(disp, r, stride=r) / r if r > 1 else disp
            bwd = invert_fixed_point(low, config.inverse_iterations)
            bwd = resize_field(bwd, float(r), shape) if r > 1 else bwd
        _report(progress, "inverse", 1.0)
    return disp.detach(), bwd
