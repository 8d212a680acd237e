"""The `block-matching` pre-alignment: a rigid or affine fit to block displacements of MIND-SSC.

In the manner of NiftyReg's ``reg_aladin`` (Ourselin et al., Image Vis. Comput. 2001; Modat et
al., 2014), on modality-independent features, coarse to fine with a few rounds per level:

1. both images are sampled on an isotropic working grid in the fixed frame (the moving one through
   the alignment so far), each first anti-aliased for that spacing;
2. MIND-SSC is computed on each (patch radius and dilation: one working voxel, i.e. the level's
   spacing in mm);
3. every textured block of the fixed grid finds its best whole-voxel shift by SSD of the features,
   refined to sub-voxel by the quadratic through its 3x3x3 neighbouring costs;
4. blocks whose match leaves the moving image, finds no texture there or lies outside the moving
   mask are dropped;
5. a rigid or affine transform is fitted to the block centres and their matches by trimmed least
   squares, which ignores the worst-matching blocks (sliding organs, partial coverage, pathology).

The result is a 4x4 world matrix (LPS mm) mapping a fixed point ``x`` to the moving point
``A @ x``, like every aligner.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
from pydantic import Field, model_validator

from medfeat.config.base import ConfigModel
from medfeat.errors import GeometryError
from medfeat.geometry import Grid, Image

__all__ = ["BlockMatches", "BlockMatching", "BlockMatchingConfig", "fit_transform", "match_blocks"]

#: A level takes part only when its blocks tile every axis at least this many times (fewer leave
#: an affine fit undetermined along that axis); coarser levels are skipped on thin images.
MIN_BLOCKS_PER_AXIS = 3


class BlockMatchingConfig(ConfigModel):
    """Options of the `block-matching` pre-alignment. Lists give one value per level, coarse to
    fine; lengths are in mm."""

    transform: Literal["rigid", "affine"] = Field(
        "affine", description="`rigid` (rotation + translation) or `affine` (12 parameters)."
    )
    spacings_mm: list[float] = Field(
        [8.0, 4.0],
        min_length=1,
        description="Isotropic working spacing of each level (mm; the images are resampled onto "
        "it in the fixed image's frame).",
    )
    block_size_mm: list[float] = Field(
        [32.0, 16.0],
        min_length=1,
        description="Edge of the blocks per level (mm; rounded to whole working voxels, >= 2).",
    )
    search_radius_mm: list[float] = Field(
        [24.0, 8.0],
        min_length=1,
        description="How far each block searches along every axis per level (mm; rounded to "
        "whole working voxels, >= 1).",
    )
    iterations: int = Field(
        5, ge=1, le=100, strict=True, description="Match-and-fit rounds per level (count)."
    )
    inlier_fraction: float = Field(
        0.5,
        gt=0.1,
        le=1.0,
        description="Share of the blocks kept by the trimmed least-squares fit: those with the "
        "smallest residuals (fraction).",
    )
    textured_fraction: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="Share of the blocks that take part: those with the largest intensity "
        "variance in the fixed image, inside the fixed mask when given (fraction).",
    )
    use_masks: bool = Field(
        True,
        description="Use blocks centred inside the fixed mask whose match lies inside the moving "
        "mask (when the pipeline has them).",
    )
    tolerance_mm: float = Field(
        0.05,
        gt=0,
        le=10,
        allow_inf_nan=False,
        description="A level stops early once no corner of the fixed image moves by more than "
        "this between rounds (mm).",
    )

    @model_validator(mode="after")
    def _levels(self) -> BlockMatchingConfig:
        n = len(self.spacings_mm)
        if len(self.block_size_mm) != n or len(self.search_radius_mm) != n:
            raise ValueError(
                f"block-matching: spacings_mm has {n} level(s), block_size_mm "
                f"{len(self.block_size_mm)} and search_radius_mm {len(self.search_radius_mm)}; "
                "give one entry per level in each"
            )
        for name in ("spacings_mm", "block_size_mm", "search_radius_mm"):
            if any(not (0 < v <= 200) for v in getattr(self, name)):
                raise ValueError(f"block-matching: every {name} entry must be in (0, 200] mm")
        for s, b in zip(self.spacings_mm, self.block_size_mm, strict=True):
            if b < 2 * s:
                raise ValueError(
                    f"block-matching: a block of {b:g} mm is less than two {s:g} mm voxels; make "
                    "block_size_mm at least twice spacings_mm"
                )
        return self


class BlockMatches(NamedTuple):
    """What :func:`match_blocks` found, one row per block (voxels, array order)."""

    centres: np.ndarray  # [N, 3] block centres
    shifts: np.ndarray  # [N, 3] sub-voxel shifts to the best match
    cost: np.ndarray  # [N] cost at the best whole shift
    spread: np.ndarray  # [N] highest minus lowest cost: 0 where the moving side has no texture


def match_blocks(fixed, moving, block: int, radius: int) -> BlockMatches:
    """Best shift of every ``block``^3 block of ``fixed`` within ``radius`` voxels in ``moving``.

    ``fixed`` and ``moving`` are feature tensors ``[1, C, D, H, W]`` on one grid; the cost of a
    shift is the mean squared feature difference over the block (``moving`` is extended by its
    border values). Equal costs go to the shortest shift, so a block without texture in
    ``moving`` reports no motion (and a zero ``spread``) instead of an arbitrary corner of the
    search range.
    """
    import torch
    import torch.nn.functional as F

    _, _, d, h, w = fixed.shape
    nd, nh, nw = d // block, h // block, w // block
    if min(nd, nh, nw) < 1:
        raise ValueError(f"a {block}-voxel block does not fit a {d}x{h}x{w} grid")
    fix = fixed[..., : nd * block, : nh * block, : nw * block]
    pad = F.pad(moving, (radius,) * 6, mode="replicate")
    r = torch.arange(-radius, radius + 1)
    n = len(r)
    cost = fixed.new_empty((n, n, n, nd, nh, nw))
    for a in range(n):
        for b in range(n):
            for c in range(n):
                shifted = pad[..., a : a + nd * block, b : b + nh * block, c : c + nw * block]
                diff = (fix - shifted).pow(2).sum(1, keepdim=True)
                cost[a, b, c] = F.avg_pool3d(diff, block, stride=block)[0, 0]
    flat = cost.reshape(n**3, -1)
    spread = flat.max(0).values - flat.min(0).values
    length = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 1, 3)
    flat = flat + 1e-6 * spread.clamp_min(1e-12) * length.pow(2).sum(-1).to(flat.dtype)
    best_cost, best = flat.min(0)
    whole = torch.stack([best // (n * n), (best // n) % n, best % n], 1)
    shifts = whole.to(fixed.dtype) - radius + _quadratic_offset(flat, whole, n)
    grid = torch.stack(
        torch.meshgrid(torch.arange(nd), torch.arange(nh), torch.arange(nw), indexing="ij"), -1
    ).reshape(-1, 3)
    centres = grid.to(fixed.dtype) * block + (block - 1) / 2.0
    return BlockMatches(centres.numpy(), shifts.numpy(), best_cost.numpy(), spread.numpy())


def _quadratic_offset(flat, whole, n: int):
    """Sub-voxel offset ``[N, 3]`` of each block's cost minimum: the vertex of the quadratic
    through the costs of its 3x3x3 neighbourhood of shifts (gradient and Hessian by central
    differences, cross terms included, so valleys oblique to the axes are followed); zero where
    the neighbourhood leaves the search range or the quadratic is not convex."""
    import torch

    cols = torch.arange(flat.shape[1])
    inside = ((whole >= 1) & (whole <= n - 2)).all(1)
    centre = whole.clamp(1, n - 2)

    def at(*step):
        idx = centre + torch.tensor(step)
        return flat[idx[:, 0] * n * n + idx[:, 1] * n + idx[:, 2], cols].double()

    unit = torch.eye(3, dtype=torch.long)
    c0 = at(0, 0, 0)
    plus = [at(*unit[i]) for i in range(3)]
    minus = [at(*-unit[i]) for i in range(3)]
    grad = torch.stack([(plus[i] - minus[i]) / 2 for i in range(3)], 1)
    hess = torch.empty(len(c0), 3, 3, dtype=torch.float64)
    for i in range(3):
        hess[:, i, i] = plus[i] + minus[i] - 2 * c0
        for j in range(i + 1, 3):
            ei, ej = unit[i], unit[j]
            hess[:, i, j] = hess[:, j, i] = (
                at(*(ei + ej)) - at(*(ei - ej)) - at(*(ej - ei)) + at(*(-ei - ej))
            ) / 4
    convex = torch.linalg.eigvalsh(hess).min(1).values > 1e-12
    ok = inside & convex
    offset = torch.zeros(len(c0), 3, dtype=torch.float64)
    if ok.any():
        step = -torch.linalg.solve(hess[ok], grad[ok].unsqueeze(-1)).squeeze(-1)
        offset[ok] = step.clamp(-1.0, 1.0)
    return offset.to(flat.dtype)


def _solve(p: np.ndarray, q: np.ndarray, transform: str) -> np.ndarray:
    """Least-squares 4x4 ``A`` with ``A @ p ~ q`` (rows are points)."""
    out = np.eye(4)
    if transform == "affine":
        design = np.hstack([p, np.ones((len(p), 1))])
        sol, *_ = np.linalg.lstsq(design, q, rcond=None)
        out[:3, :3], out[:3, 3] = sol[:3].T, sol[3]
        return out
    pc, qc = p.mean(0), q.mean(0)  # Kabsch: the rotation best mapping p onto q
    u, _, vt = np.linalg.svd((p - pc).T @ (q - qc))
    fix = np.diag([1.0, 1.0, np.sign(np.linalg.det(vt.T @ u.T))])
    rot = vt.T @ fix @ u.T
    out[:3, :3], out[:3, 3] = rot, qc - rot @ pc
    return out


def fit_transform(
    p: np.ndarray, q: np.ndarray, transform: str = "affine", inlier_fraction: float = 0.5
) -> np.ndarray:
    """Trimmed least-squares fit of a rigid or affine ``A`` with ``A @ p ~ q``: refit on the
    ``inlier_fraction`` of the points with the smallest residuals until that set is stable.

    An affine fit needs points that span a volume: points close to one plane leave it
    undetermined across the plane (a :class:`GeometryError`); a trimmed subset that would be
    planar is not used.
    """
    affine = transform == "affine"
    if affine and not _spans_volume(p):
        raise GeometryError(
            f"block-matching: the {len(p)} usable blocks lie close to one plane, which leaves an "
            "affine fit undetermined across it.",
            remedy="Use transform: rigid, or a fixed image and mask that span at least three "
            "block layers along every axis.",
        )
    keep = np.arange(len(p))
    a = _solve(p, q, transform)
    count = max(_minimum_points(transform), int(round(inlier_fraction * len(p))))
    for _ in range(20):
        residual = np.linalg.norm(p @ a[:3, :3].T + a[:3, 3] - q, axis=1)
        new = np.sort(np.argsort(residual, kind="stable")[:count])
        if np.array_equal(new, keep) or (affine and not _spans_volume(p[new])):
            break
        keep = new
        a = _solve(p[keep], q[keep], transform)
    return a


def _spans_volume(p: np.ndarray, ratio: float = 0.05) -> bool:
    """Whether points spread along all three directions (smallest over largest singular value
    of the centred points at least ``ratio``)."""
    if len(p) < 4:
        return False
    s = np.linalg.svd(p - p.mean(0), compute_uv=False)
    return bool(s[0] > 0 and s[-1] >= ratio * s[0])


def _minimum_points(transform: str) -> int:
    return 12 if transform == "affine" else 6


def _corners(grid: Grid) -> np.ndarray:
    n = np.asarray(grid.shape) - 1
    idx = np.array([[i, j, k] for i in (0, n[0]) for j in (0, n[1]) for k in (0, n[2])], float)
    return grid.array_index_to_world(idx)


class BlockMatching:
    """Rigid or affine fit to MIND-SSC block matches by trimmed least squares (reg_aladin-like)."""

    def __init__(self, config: BlockMatchingConfig) -> None:
        self.config = config

    def align(
        self,
        fixed: Image,
        moving: Image,
        *,
        initial: np.ndarray,
        fixed_mask: Image | None = None,
        moving_mask: Image | None = None,
    ) -> np.ndarray:
        import torch

        from medfeat.engine.mind import mind_ssc
        from medfeat.geometry.working import resample_image, working_grid

        c = self.config
        a = np.asarray(initial, dtype=np.float64)
        corners = _corners(fixed.grid)
        extent = np.asarray(fixed.grid.size_ijk) * np.asarray(fixed.grid.spacing)
        levels = [
            (spacing, block, max(1, int(round(radius_mm / spacing))))
            for spacing, block_mm, radius_mm in zip(
                c.spacings_mm, c.block_size_mm, c.search_radius_mm, strict=True
            )
            for block in [max(2, int(round(block_mm / spacing)))]
            if np.round(extent / spacing).min() // block >= MIN_BLOCKS_PER_AXIS
        ]
        if not levels:
            raise GeometryError(
                f"block-matching: no level fits {MIN_BLOCKS_PER_AXIS} blocks along every axis of "
                f"the fixed image ({'x'.join(f'{e:g}' for e in extent)} mm); the blocks are "
                f"{', '.join(f'{b:g}' for b in c.block_size_mm)} mm.",
                remedy=f"Set block_size_mm to at most a third of the shortest extent "
                f"({extent.min() / MIN_BLOCKS_PER_AXIS:g} mm), with spacings_mm at most half of it.",
            )
        for spacing, block, radius in levels:
            grid = working_grid(fixed.grid, spacing)
            # float64 from here on: float32 features differed by up to ~1e-4 between runs (thread
            # count), enough to flip near-tied block matches and so the fit
            # (results must not depend on how the run was started)
            fixed_w = resample_image(_antialiased(fixed, spacing), grid).tensor(dtype=torch.float64)
            moving_level = _antialiased(moving, spacing)
            with torch.no_grad():
                feat_fixed = mind_ssc(fixed_w[None, None], 1, 1)
            candidates = self._textured_blocks(fixed_w.numpy(), block, grid, fixed_mask)
            for _ in range(c.iterations):
                moving_w = resample_image(moving_level, grid, affine=a).tensor(dtype=torch.float64)
                with torch.no_grad():
                    feat_moving = mind_ssc(moving_w[None, None], 1, 1)
                    found = match_blocks(feat_fixed, feat_moving, block, radius)
                p, q = self._usable_matches(found, candidates, block, grid, a, moving, moving_mask)
                new = fit_transform(p, q, c.transform, c.inlier_fraction)
                change = np.abs(
                    corners @ (new[:3, :3] - a[:3, :3]).T + (new[:3, 3] - a[:3, 3])
                ).max()
                a = new
                if change < c.tolerance_mm:
                    break
        return a

    def _usable_matches(
        self,
        found: BlockMatches,
        candidates: np.ndarray,
        block: int,
        grid: Grid,
        a: np.ndarray,
        moving: Image,
        moving_mask: Image | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """World points ``p`` (fixed) and ``q`` (moving) of the candidate blocks whose match lies
        wholly inside the moving image, has texture there and, with ``use_masks``, is centred in
        the moving mask; a :class:`GeometryError` naming the reasons when too few are left."""
        c = self.config
        centres = found.centres[candidates].astype(np.float64)
        shifts = found.shifts[candidates].astype(np.float64)

        def to_moving(index: np.ndarray) -> np.ndarray:  # the moving grid was sampled at A @ x
            return grid.array_index_to_world(index) @ a[:3, :3].T + a[:3, 3]

        half = (block - 1) / 2.0
        corners = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)]) * half
        matched = (centres + shifts)[:, None, :] + corners[None]
        inside = moving.grid.contains_world(to_moving(matched.reshape(-1, 3))).reshape(-1, 8)
        in_view = inside.all(1)
        spread = found.spread[candidates]
        textured = spread > 1e-4 * max(float(spread.max(initial=0.0)), 1e-12)
        q = to_moving(centres + shifts)
        in_mask = np.ones(len(q), bool)
        if c.use_masks and moving_mask is not None:
            in_mask = _inside(moving_mask, q)
        usable = in_view & textured & in_mask
        needed = _minimum_points(c.transform)
        if usable.sum() < needed:
            raise GeometryError(
                f"block-matching found {int(usable.sum())} usable block(s) of "
                f"{block * grid.spacing[0]:g} mm at {grid.spacing[0]:g} mm, fewer than the "
                f"{needed} {'an' if c.transform == 'affine' else 'a'} {c.transform} fit needs: of "
                f"the {len(q)} textured fixed blocks, {int((~in_view).sum())} matched outside the "
                f"moving image, {int((~textured).sum())} found no texture in it and "
                f"{int((~in_mask).sum())} lay outside the moving mask.",
                remedy="Check that the images overlap after the pre-alignments before this one "
                "(`centroids` first helps), make block_size_mm smaller, or set use_masks: false.",
            )
        return grid.array_index_to_world(centres[usable]), q[usable]

    def _textured_blocks(
        self, fixed: np.ndarray, block: int, grid: Grid, fixed_mask: Image | None
    ) -> np.ndarray:
        """Indices of the blocks that take part: the most textured ``textured_fraction`` of
        those centred in the fixed mask (all blocks without one)."""
        c = self.config
        nd, nh, nw = (n // block for n in fixed.shape)
        cut = fixed[: nd * block, : nh * block, : nw * block]
        blocks = cut.reshape(nd, block, nh, block, nw, block).transpose(0, 2, 4, 1, 3, 5)
        variance = blocks.reshape(nd * nh * nw, -1).var(1)
        order = np.arange(len(variance))
        if c.use_masks and fixed_mask is not None:
            idx = np.stack(np.meshgrid(*(np.arange(n) for n in (nd, nh, nw)), indexing="ij"), -1)
            centres = idx.reshape(-1, 3) * block + (block - 1) / 2.0
            order = order[_inside(fixed_mask, grid.array_index_to_world(centres))]
        order = order[variance[order] > 0]
        count = max(_minimum_points(c.transform), int(round(c.textured_fraction * len(order))))
        return np.sort(order[np.argsort(-variance[order], kind="stable")[:count]])


def _antialiased(image: Image, spacing_mm: float) -> Image:
    """``image`` ready to be sampled at ``spacing_mm`` without aliasing: along each axis finer
    than half of it, averaged over whole voxels (on a coarser grid over the same box), then
    Gaussian-smoothed by what is left of sigma = half the target spacing; the image itself when no
    axis is finer. Cheap in memory: the smoothing runs on the averaged image."""
    import torch
    import torch.nn.functional as F
    from scipy import ndimage

    from medfeat.geometry.image import derived_meta

    src = np.asarray(image.grid.spacing_array_order, dtype=np.float64)
    factor = np.maximum(1, np.floor(spacing_mm / (2.0 * src))).astype(int)
    target = np.sqrt(np.clip((spacing_mm / 2.0) ** 2 - (src / 2.0) ** 2, 0.0, None))
    if not (target / src > 0.25).any():
        return image
    data = image.tensor(dtype=torch.float32)
    grid = image.grid
    if (factor > 1).any():
        shape = tuple(int(n // f) for n, f in zip(grid.shape, factor, strict=True))
        if min(shape) >= 1:
            with torch.no_grad():
                data = F.avg_pool3d(data[None, None], tuple(factor.tolist()))[0, 0]
            spacing = src * factor
            grid = grid.with_shape_and_spacing(shape, tuple(spacing[::-1]))
            src = spacing
    # a box of width w blurs like a Gaussian of sigma w / sqrt(12)
    remaining = np.sqrt(np.clip(target**2 - src**2 / 12.0, 0.0, None)) / src
    arr = data.numpy()
    for axis, sigma in enumerate(remaining):
        if sigma > 0.25:
            arr = ndimage.gaussian_filter1d(arr, float(sigma), axis=axis, mode="nearest")
    return Image(np.ascontiguousarray(arr, dtype=np.float32), grid, derived_meta(image.meta))


def _inside(mask: Image, points_world: np.ndarray) -> np.ndarray:
    """Which world points fall on a non-zero voxel of ``mask`` (nearest voxel)."""
    idx = np.round(mask.grid.world_to_array_index(points_world)).astype(int)
    shape = np.asarray(mask.grid.shape)
    ok = np.all((idx >= 0) & (idx < shape), axis=1)
    out = np.zeros(len(idx), dtype=bool)
    values = mask.numpy()
    out[ok] = values[tuple(idx[ok].T)] > 0
    return out


def make_block_matching(config: BlockMatchingConfig, context) -> BlockMatching:
    return BlockMatching(config)
