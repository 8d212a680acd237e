"""Memory-bounded multi-level feature correspondence matching between two volumes.

Each volume is described by a list of feature levels ``[C_l, d_l, h_l, w_l]`` (tensor axes
in numpy order), each with its own 4x4 affine mapping a continuous voxel index ``(k, j, i, 1)``
to a common world frame (mm). Levels of different resolution therefore meet in world space.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medfeat.engine.warp import trilinear_points

__all__ = ["MatchResult", "match_points", "candidate_level_of", "inside_levels"]


@dataclass
class MatchResult:
    """Best match per query: world position in B ``[N, 3]`` (mm), score ``[N]`` (mean cosine
    over levels, in ``[-1, 1]``) and the flat voxel index of the winning candidate on the
    candidate level of B ``[N]``.

    A query is *unmatched* when it lies outside A (where its features would be copies of the
    border; see :func:`match_points`' ``extent_a``) or when its search box holds no candidate
    of B: its position and score are NaN and its candidate index is ``-1``.
    """

    positions_mm: Tensor
    scores: Tensor
    candidate_index: Tensor

    @property
    def matched(self) -> Tensor:
        """``[N]`` bool: which queries have a match."""
        return self.candidate_index >= 0

    @property
    def num_unmatched(self) -> int:
        return int((self.candidate_index < 0).sum())


def _affine(a: Tensor | np.ndarray) -> Tensor:
    m = torch.as_tensor(np.asarray(a, dtype=np.float64) if not isinstance(a, Tensor) else a)
    m = m.to(torch.float64)
    if m.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got {tuple(m.shape)}")
    return m


def _apply(affine: Tensor, pts: Tensor) -> Tensor:
    return pts @ affine[:3, :3].t() + affine[:3, 3]


def candidate_level_of(affines: Sequence[Tensor | np.ndarray]) -> int:
    """Index of the finest level (smallest voxel volume ``|det A[:3, :3]|``)."""
    vols = [abs(float(torch.linalg.det(_affine(a)[:3, :3]))) for a in affines]
    return int(np.argmin(vols))


def inside_levels(
    shapes: Sequence[Sequence[int]], inv_affines: Sequence[Tensor], world: Tensor
) -> Tensor:
    """``[M]`` bool: which world points lie inside the voxel-edge box (index ``-0.5`` to
    ``size - 0.5``) of at least one level (``shapes``: ``(d, h, w)`` each)."""
    inside = torch.zeros(world.shape[0], dtype=torch.bool)
    for shape, inv in zip(shapes, inv_affines, strict=True):
        idx = _apply(inv, world)
        size = torch.as_tensor(list(shape), dtype=idx.dtype)
        inside |= ((idx >= -0.5) & (idx <= size - 0.5)).all(dim=1)
    return inside


def _describe(
    feats_cl: Sequence[Tensor], inv_affines: Sequence[Tensor], world: Tensor
) -> list[Tensor]:
    """L2-normalised trilinear descriptors of each level at world points ``[M, 3]``."""
    out = []
    for vol, inv in zip(feats_cl, inv_affines, strict=True):
        idx = _apply(inv, world).to(vol.dtype)
        out.append(F.normalize(trilinear_points(vol, idx), dim=1, eps=1e-12))
    return out


def match_points(
    feats_a: Sequence[Tensor],
    affines_a: Sequence[Tensor | np.ndarray],
    feats_b: Sequence[Tensor],
    affines_b: Sequence[Tensor | np.ndarray],
    points_mm: Tensor | np.ndarray,
    *,
    candidate_level: int | None = None,
    box_half_size_mm: float | Sequence[float] | None = None,
    centres_b_mm: Tensor | np.ndarray | None = None,
    extent_a: tuple[Tensor | np.ndarray, Sequence[int]] | None = None,
    chunk: int = 16384,
) -> MatchResult:
    """For each query point (world mm, ``[N, 3]``) find the most similar voxel of B.

    The query descriptor of level ``l`` is the trilinear sample of ``feats_a[l]`` at the query,
    L2-normalised; candidates are the voxels of level ``candidate_level`` of B (default: the
    finest), whose level-``l`` descriptors are trilinear samples of ``feats_b[l]`` at the
    candidate's world position, L2-normalised. The score is the mean over levels of the cosine
    similarities; the best candidate is found by a running argmax over chunks of ``chunk``
    candidates (ties keep the lowest candidate index, as a brute-force argmax would).

    ``box_half_size_mm`` (scalar or per world axis) restricts each query's candidates to a box
    around ``centres_b_mm`` (default: the query position itself, i.e. A and B share the world
    frame); disallowed candidates are masked before the argmax and chunks without any allowed
    candidate are skipped before sampling their features.

    Queries outside A, and queries whose box holds no candidate, are unmatched (NaN position
    and score, candidate index ``-1``; see :class:`MatchResult`): they never raise. A query is
    outside A when it lies outside the voxel-edge box of ``extent_a`` (the 4x4 index->world
    affine and the ``(d, h, w)`` shape of image A; give it when the feature levels may not cover
    the whole image), by default outside that of every level of A.

    Peak memory beyond the inputs is about
    ``4 bytes * (N * sum_l C_l + chunk * sum_l C_l + 8 * chunk * max_l C_l + 2 * N * chunk)``
    plus ``N * chunk`` bytes for the box mask: the query descriptors, one chunk of candidate
    descriptors, the trilinear gather of one level and the similarity block - never
    ``N * (number of candidates)``.
    """
    if len(feats_a) != len(affines_a) or len(feats_b) != len(affines_b):
        raise ValueError("each feature level needs an affine")
    if len(feats_a) != len(feats_b):
        raise ValueError("A and B need the same number of levels")
    for fa, fb in zip(feats_a, feats_b, strict=True):
        if fa.dim() != 4 or fb.dim() != 4 or fa.shape[0] != fb.shape[0]:
            raise ValueError("levels must be [C, d, h, w] with matching C in A and B")
    aff_a = [_affine(a) for a in affines_a]
    aff_b = [_affine(a) for a in affines_b]
    inv_a = [torch.linalg.inv(a) for a in aff_a]
    inv_b = [torch.linalg.inv(a) for a in aff_b]
    cl_a = [f.float().permute(1, 2, 3, 0).contiguous() for f in feats_a]
    cl_b = [f.float().permute(1, 2, 3, 0).contiguous() for f in feats_b]
    n_levels = len(cl_a)

    queries = torch.as_tensor(
        np.asarray(points_mm) if not isinstance(points_mm, Tensor) else points_mm
    )
    queries = queries.to(torch.float64).reshape(-1, 3)
    n = queries.shape[0]
    q_desc = _describe(cl_a, inv_a, queries)

    lvl = candidate_level_of(aff_b) if candidate_level is None else candidate_level
    shape = tuple(feats_b[lvl].shape[1:])
    total = int(np.prod(shape))

    half = None
    if box_half_size_mm is not None:
        half = torch.as_tensor(box_half_size_mm, dtype=torch.float64).expand(3)
        centres = (
            queries
            if centres_b_mm is None
            else torch.as_tensor(
                np.asarray(centres_b_mm) if not isinstance(centres_b_mm, Tensor) else centres_b_mm
            )
            .to(torch.float64)
            .reshape(-1, 3)
        )
        lo, hi = centres - half, centres + half

    best = torch.full((n,), float("-inf"))
    best_idx = torch.full((n,), -1, dtype=torch.long)
    strides = torch.tensor([shape[1] * shape[2], shape[2], 1])
    for start in range(0, total, chunk):
        flat = torch.arange(start, min(start + chunk, total))
        index = torch.stack(
            [(flat // strides[0]), (flat // strides[1]) % shape[1], flat % shape[2]], 1
        )
        world = _apply(aff_b[lvl], index.to(torch.float64))
        allowed = None
        if half is not None:
            allowed = torch.ones((n, flat.numel()), dtype=torch.bool)
            for ax in range(3):
                w = world[:, ax].unsqueeze(0)
                allowed &= (w >= lo[:, ax : ax + 1]) & (w <= hi[:, ax : ax + 1])
            if not bool(allowed.any()):
                continue
        sim = torch.zeros((n, flat.numel()))
        for q, c in zip(q_desc, _describe(cl_b, inv_b, world), strict=True):
            sim.addmm_(q, c.t())
        sim /= n_levels
        if allowed is not None:
            sim.masked_fill_(~allowed, float("-inf"))
        val, arg = sim.max(dim=1)
        better = val > best
        best = torch.where(better, val, best)
        best_idx = torch.where(better, arg + start, best_idx)

    if extent_a is None:
        outside_a = ~inside_levels([f.shape[1:] for f in feats_a], inv_a, queries)
    else:
        inv_image = torch.linalg.inv(_affine(extent_a[0]))
        outside_a = ~inside_levels([tuple(extent_a[1])], [inv_image], queries)
    best_idx[outside_a] = -1
    found = best_idx >= 0
    idx = best_idx.clamp_min(0)
    index = torch.stack([(idx // strides[0]), (idx // strides[1]) % shape[1], idx % shape[2]], 1)
    pos = _apply(aff_b[lvl], index.to(torch.float64))
    pos[~found] = float("nan")
    best[~found] = float("nan")
    return MatchResult(positions_mm=pos, scores=best, candidate_index=best_idx)
