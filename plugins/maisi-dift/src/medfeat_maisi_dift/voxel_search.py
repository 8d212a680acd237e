"""Exact MedDIFT scores at image voxels, computed from the feature levels' native cells.

The reference scores a voxel ``v`` of B by the mean over levels of the cosine between the query
descriptor ``q_l`` (unit length) and ``f_l(v)``, level ``l`` trilinearly upsampled to the image
(``align_corners=False``, border clamp). With ``F_l`` the level's cells and ``w_c(v)`` the eight
trilinear weights of the cube around ``v``:

- numerator: ``q_l . f_l(v) = sum_c w_c(v) (q_l . F_l[c])``, the trilinear interpolation of the
  scalar map ``D_l = F_l q_l`` (one matrix product at native resolution per query);
- denominator: ``|f_l(v)|^2 = sum_{c,c'} w_c w_c' F_l[c] . F_l[c']``, a quadratic form in the
  eight surrounding cells. The products of neighbouring cells are computed once per volume (14
  offset maps), and since the weights are separable over the axes, the form collapses, axis by
  axis, onto 27 maps ``H_t`` (one per combination of the per-axis weight products
  ``(1-w)^2``, ``w^2``, ``w(1-w)``); it does not depend on the query, so ``1/|f_l(v)|`` is
  computed once per voxel of B.

This needs each level's cells to be axis-aligned with the candidate voxels (each array axis of
the image maps to one axis of the level by a scale and an offset), which holds for every
backbone whose levels cover the image box on resized grids (``maisi-dift`` after its exact RAS
reorientation, MIND-SSC, ...). :func:`axis_maps` returns None otherwise and the matcher falls
back to interpolating every channel.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medfeat.api import Grid

#: Candidate voxels scored in one slab (per query, a few float32 maps of this size).
SLAB_VOXELS = 2**22
#: Offsets between corners of a cell cube, up to sign: the 14 products maps per level.
_CORNERS = list(itertools.product((0, 1), repeat=3))
_DELTAS = [
    d for d in itertools.product((-1, 0, 1), repeat=3) if d >= (0, 0, 0) and d != (0, 0, 0)
] + [(0, 0, 0)]


@dataclass
class AxisMap:
    """How one array axis of the candidate grid samples one axis of a level.

    Voxel ``n`` along the axis sits between cells ``base[n]`` and ``base[n] + 1`` of the
    level's edge-padded lattice, with weight ``frac[n]`` on the upper one.
    """

    level_axis: int
    base: Tensor  # long [N]
    frac: Tensor  # float64 [N]

    def crop(self, rows: slice) -> AxisMap:
        return AxisMap(self.level_axis, self.base[rows], self.frac[rows])


def axis_maps(
    level_affine: np.ndarray, level_shape: Sequence[int], cand: Grid
) -> list[AxisMap] | None:
    """Per candidate array axis, the level axis and trilinear base/weights; None if not aligned.

    ``level_affine`` maps a level's array index to world (4x4); the level has ``level_shape``
    cells (array order).
    """
    m = np.linalg.inv(level_affine) @ cand.array_index_to_world_matrix()
    lin = m[:3, :3]
    scale = np.abs(lin).max(axis=0)
    nonzero = np.abs(lin) > 1e-9 * np.maximum(scale, 1e-300)
    if not (np.all(nonzero.sum(0) == 1) and np.all(nonzero.sum(1) == 1)):
        return None
    maps = []
    for a, n_cand in enumerate(cand.shape):
        r = int(np.argmax(nonzero[:, a]))
        n = int(level_shape[r])
        u = lin[r, a] * np.arange(n_cand, dtype=np.float64) + m[r, 3]
        u = np.clip(u, 0.0, n - 1)
        base = np.minimum(np.floor(u), n - 1)
        maps.append(AxisMap(r, torch.from_numpy(base.astype(np.int64)), torch.from_numpy(u - base)))
    return maps


class LevelCells:
    """One feature level of B prepared for exact scoring: padded cells and the 27 maps ``H_t``."""

    def __init__(self, data: Tensor, affine: np.ndarray) -> None:
        self.affine = np.asarray(affine, dtype=np.float64)
        self.shape = tuple(int(s) for s in data.shape[1:])
        cl = data.float().permute(1, 2, 3, 0)
        # edge padding by one cell at the upper end: the upper corner of the last cell is itself
        self.cells = F.pad(cl.permute(3, 0, 1, 2)[None], (0, 1, 0, 1, 0, 1), mode="replicate")[0]
        self.cells = self.cells.permute(1, 2, 3, 0).contiguous()  # [n0+1, n1+1, n2+1, C]
        self.h = self._quadratic_form_maps()

    def _products(self) -> dict[tuple[int, int, int], Tensor]:
        """``P_d[p] = cells[p] . cells[p + d]`` for the 14 offsets ``d`` (float64, zero outside)."""
        cells = self.cells
        size = cells.shape[:3]
        out = {}
        for d in _DELTAS:
            src = tuple(slice(max(0, -k), s - max(0, k)) for k, s in zip(d, size, strict=True))
            dst = tuple(slice(max(0, k), s - max(0, -k)) for k, s in zip(d, size, strict=True))
            p = torch.zeros(size, dtype=torch.float64)
            a, b = cells[src], cells[dst]
            for i in range(0, a.shape[0], 8):  # bound the temporary product
                p[src][i : i + 8] = (a[i : i + 8] * b[i : i + 8]).sum(-1, dtype=torch.float64)
            out[d] = p
        return out

    def _quadratic_form_maps(self) -> Tensor:
        """``H[t0, t1, t2]`` ``[3, 3, 3, n0, n1, n2]`` (float64) on the cube bases.

        Per axis the weight products of corners ``(a, a')`` are ``(1-w)^2`` for (0, 0), ``w^2``
        for (1, 1) and ``w(1-w)`` for (0, 1) and (1, 0): types 0, 1 and 2.
        """
        prods = self._products()
        n = self.shape
        h = torch.zeros((3, 3, 3, *n), dtype=torch.float64)
        for a in _CORNERS:
            for b in _CORNERS:
                d = tuple(y - x for x, y in zip(a, b, strict=True))
                start = a
                if d not in prods:  # use the symmetric product from b
                    d, start = tuple(-k for k in d), b
                window = tuple(slice(s, s + k) for s, k in zip(start, n, strict=True))
                t = tuple(x if x == y else 2 for x, y in zip(a, b, strict=True))
                h[t] += prods[d][window]
        return h

    def crop(
        self, maps: list[AxisMap], *, cells: bool = True, h: bool = True
    ) -> tuple[Tensor | None, Tensor | None, list[AxisMap]]:
        """Cells and ``H`` restricted to what ``maps`` touch, axes in candidate order."""
        lo = [0, 0, 0]
        hi = list(self.shape)
        local = []
        for m in maps:
            b0, b1 = int(m.base.min()), int(m.base.max())
            lo[m.level_axis], hi[m.level_axis] = b0, b1 + 1
            local.append(AxisMap(m.level_axis, m.base - b0, m.frac))
        perm = [m.level_axis for m in maps]
        c = hh = None
        if cells:
            c = self.cells[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1]
            c = c.permute(*perm, 3).contiguous()
        if h:
            hh = self.h[:, :, :, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
            hh = hh.permute(*perm, *(3 + p for p in perm))
        return c, hh, local


def interpolate(values: Tensor, maps: list[AxisMap]) -> Tensor:
    """Separable linear interpolation of ``values`` (axes in candidate order) at the voxels."""
    out = values
    for axis, m in enumerate(maps):
        w = m.frac.to(out.dtype).view([-1 if k == axis else 1 for k in range(3)])
        lo = out.index_select(axis, m.base)
        hi = out.index_select(axis, m.base + 1)
        out = torch.lerp(lo, hi, w)
    return out


def inverse_norms(h: Tensor, maps: list[AxisMap]) -> Tensor:
    """``1 / |f(v)|`` (float32) at the voxels from the cropped ``H`` maps (candidate order)."""
    out = h
    for m in maps:  # contract the leading type axis with this axis's weight products
        w = m.frac
        coef = torch.stack([(1 - w) ** 2, w**2, w * (1 - w)])  # [3, N]
        # the remaining type axes lead; this axis's cells are always at dimension 3
        out = out.index_select(3, m.base)
        shape = [3] + [1] * (out.dim() - 1)
        shape[3] = -1
        out = (out * coef.view(shape)).sum(0)
    return out.clamp_min(0).sqrt().clamp_min(1e-12).reciprocal().float()


class ExactVoxelScorer:
    """Mean per-level cosine of unit query descriptors against B's upsampled levels, exactly."""

    def __init__(self, levels_b: Sequence[tuple[Tensor, np.ndarray]]) -> None:
        self.levels = [LevelCells(data, aff) for data, aff in levels_b]

    def maps_for(self, cand: Grid) -> list[list[AxisMap]] | None:
        out = []
        for lv in self.levels:
            m = axis_maps(lv.affine, lv.shape, cand)
            if m is None:
                return None
            out.append(m)
        return out

    def inverse_norm_maps(self, cand: Grid, maps: list[list[AxisMap]]) -> list[Tensor]:
        """``1 / |f_l(v)|`` for every voxel of ``cand`` and level (float32, ``cand.shape`` each),
        once per volume: it does not depend on the query."""
        out = [torch.empty(cand.shape) for _ in self.levels]
        for sl in self._slabs(cand):
            for lv, lmaps, inv in zip(self.levels, maps, out, strict=True):
                _, h, local = lv.crop([lmaps[0].crop(sl), *lmaps[1:]], cells=False)
                inv[sl] = inverse_norms(h, local)
        return out

    @staticmethod
    def _slabs(cand: Grid) -> list[slice]:
        rows = max(1, SLAB_VOXELS // max(1, cand.shape[1] * cand.shape[2]))
        return [slice(r, min(r + rows, cand.shape[0])) for r in range(0, cand.shape[0], rows)]

    def best(
        self,
        queries: Sequence[Tensor],
        cand: Grid,
        maps: list[list[AxisMap]],
        allowed: Tensor | None = None,
        inverse: Sequence[Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Best flat candidate index ``[Q]`` and its score ``[Q]`` for query descriptors
        ``queries[l]`` ``[Q, C_l]`` (unit length) over the voxels of ``cand``.

        ``allowed`` (bool, ``cand.shape``) masks candidates; ties keep the lowest flat index.
        ``inverse``: the levels' :meth:`inverse_norm_maps` on ``cand``, if already computed.
        """
        n_q = queries[0].shape[0]
        best = torch.full((n_q,), float("-inf"))
        best_idx = torch.full((n_q,), -1, dtype=torch.long)
        per_row = cand.shape[1] * cand.shape[2]
        for sl in self._slabs(cand):
            r0 = sl.start
            parts = []
            for i, (lv, lmaps) in enumerate(zip(self.levels, maps, strict=True)):
                slab = [lmaps[0].crop(sl), *lmaps[1:]]
                cells, h, local = lv.crop(slab, h=inverse is None)
                inv = inverse_norms(h, local) if inverse is None else inverse[i][sl]
                parts.append((cells, inv, local))
            for q in range(n_q):
                score = None
                for (cells, inv, local), qd in zip(parts, queries, strict=True):
                    d = cells.reshape(-1, cells.shape[-1]) @ qd[q]
                    s = interpolate(d.view(cells.shape[:3]), local).mul_(inv)
                    score = s if score is None else score.add_(s)
                score /= len(parts)
                if allowed is not None:
                    score.masked_fill_(~allowed[sl], float("-inf"))
                val, arg = score.reshape(-1).max(0)
                if val > best[q]:
                    best[q], best_idx[q] = val, arg + r0 * per_row
        return best_idx, best


def describe_points(data: Tensor, affine: np.ndarray, points_mm: np.ndarray) -> Tensor:
    """Unit-length trilinear samples ``[N, C]`` of a level ``[C, d, h, w]`` at world points
    (border clamp, the reference's upsampling at a continuous position)."""
    idx = (np.asarray(points_mm, dtype=np.float64) - affine[:3, 3]) @ np.linalg.inv(
        affine[:3, :3]
    ).T
    shape = np.asarray(data.shape[1:])
    idx = np.clip(idx, 0.0, shape - 1)
    base = np.minimum(np.floor(idx), np.maximum(shape - 2, 0)).astype(np.int64)
    frac = torch.from_numpy(idx - base)
    cl = data.float().permute(1, 2, 3, 0)
    out = torch.zeros((len(idx), data.shape[0]), dtype=torch.float64)
    for corner in _CORNERS:
        at = np.minimum(base + np.asarray(corner), shape - 1)
        w = torch.ones(len(idx), dtype=torch.float64)
        for ax, c in enumerate(corner):
            w = w * (frac[:, ax] if c else 1.0 - frac[:, ax])
        out += w[:, None] * cl[at[:, 0], at[:, 1], at[:, 2]].double()
    return F.normalize(out, dim=1, eps=1e-12).float()
