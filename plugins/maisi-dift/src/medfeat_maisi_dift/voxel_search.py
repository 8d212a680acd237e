"""Exact MedDIFT scores at image voxels, computed from the feature levels' native cells.

The reference scores a voxel ``v`` of B by the mean over levels of the cosine between the query
descriptor ``q_l`` (unit length) and ``f_l(v)``, level ``l`` trilinearly upsampled to the image
(``align_corners=False``, border clamp). With ``F_l`` the level's cells and ``w_c(v)`` the eight
trilinear weights of the cube around ``v``:

- numerator: ``q_l . f_l(v) = sum_c w_c(v) (q_l . F_l[c])``, the trilinear interpolation of the
  scalar map ``D_l = F_l q_l`` (one matrix product at native resolution for a batch of queries);
- denominator: ``|f_l(v)|^2 = sum_{c,c'} w_c w_c' F_l[c] . F_l[c']``, a quadratic form in the
  eight surrounding cells. The products of neighbouring cells are computed once per volume (14
  offset maps), and since the weights are separable over the axes, the form collapses, axis by
  axis, onto 27 maps ``H_t`` (one per combination of the per-axis weight products
  ``(1-w)^2``, ``w^2``, ``w(1-w)``). It does not depend on the query: ``1/|f_l(v)|`` is computed
  once per voxel of B, by three float64 matrix products per level (:meth:`ExactVoxelScorer.prepare`).

Interpolation along an axis is a matrix with two non-zeros per row (``1-w`` and ``w``). The
global search applies the first two axes as matrix products on the small ``D_l``; along the last
axis it cuts the voxels into chunks of :data:`CHUNK_VOXELS`, each reading a short window of cells
per level, folds ``1/|f_l(v)|`` into that chunk's interpolation matrix and sums all levels in one
batched matrix product per chunk (:meth:`ExactVoxelScorer.best_global`). The box search gathers
each query's window of cells and interpolates it, a batch of queries at once
(:meth:`ExactVoxelScorer.best_in_boxes`). Ties keep the lowest flat voxel index.

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

#: Elements (float32) of the largest per-batch temporary: bounds the search's working memory.
WORK_ELEMENTS = 2**24
#: Voxels along the last candidate axis scored by one small matrix product (global search).
CHUNK_VOXELS = 32
#: Offsets between corners of a cell cube, up to sign: the 14 products maps per level.
_CORNERS = list(itertools.product((0, 1), repeat=3))
_DELTAS = [
    d for d in itertools.product((-1, 0, 1), repeat=3) if d >= (0, 0, 0) and d != (0, 0, 0)
] + [(0, 0, 0)]


@dataclass
class AxisMap:
    """How one array axis of the candidate grid samples one axis of a level.

    Voxel ``n`` along the axis lies between cells ``base[n]`` and ``base[n] + 1`` of the level,
    with weight ``frac[n]`` on the upper one (``frac`` is 0 where ``base`` is the last cell).
    """

    level_axis: int
    base: Tensor  # long [N]
    frac: Tensor  # float64 [N]

    def matrix(self, n_cells: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """The interpolation matrix ``[N, n_cells]`` (two non-zeros per row)."""
        return self.type_matrix(n_cells, [1 - self.frac, self.frac], [0, 1], dtype)

    def quadratic_matrix(self, n_cells: int) -> Tensor:
        """``[N, 3 n_cells]`` (float64): weight products ``(1-w)^2``, ``w^2``, ``w(1-w)`` of the
        cube at ``base``, column ``t * n_cells + base`` for type ``t``."""
        w = self.frac
        return self.type_matrix(
            3 * n_cells, [(1 - w) ** 2, w**2, w * (1 - w)], [0, n_cells, 2 * n_cells], torch.float64
        )

    def type_matrix(
        self, cols: int, values: list[Tensor], offsets: list[int], dtype: torch.dtype
    ) -> Tensor:
        rows = torch.arange(len(self.base))
        out = torch.zeros((len(self.base), cols), dtype=torch.float64)
        for v, off in zip(values, offsets, strict=True):
            col = (self.base + off).clamp_max(cols - 1)
            out.index_put_((rows, col), v.to(torch.float64), accumulate=True)
        return out.to(dtype)


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
    """One feature level of B prepared for exact scoring: channels-last cells and ``H`` maps."""

    def __init__(self, data: Tensor, affine: np.ndarray) -> None:
        self.affine = np.asarray(affine, dtype=np.float64)
        self.shape = tuple(int(s) for s in data.shape[1:])
        self.cells = data.float().permute(1, 2, 3, 0).contiguous()  # [n0, n1, n2, C]
        self.h = self._quadratic_form_maps()

    def _products(self) -> dict[tuple[int, int, int], Tensor]:
        """``P_d[p] = cells[p] . cells[p + d]`` (float64 maps of float32 dot products) for the 14
        offsets ``d`` on the cells edge-padded by one at the upper end (zero outside)."""
        size = tuple(s + 1 for s in self.shape)
        padded = F.pad(self.cells.permute(3, 0, 1, 2)[None], (0, 1, 0, 1, 0, 1), mode="replicate")
        flat = padded[0].permute(1, 2, 3, 0).reshape(-1, self.cells.shape[-1])  # channels last
        del padded
        total, step = flat.shape[0], max(1, WORK_ELEMENTS // (2 * flat.shape[1]))
        out = {}
        for d in _DELTAS:
            # a shift of the flat index: pairs that wrap around a row are never copied out
            shift = d[0] * size[1] * size[2] + d[1] * size[2] + d[2]
            p = torch.zeros(total, dtype=torch.float64)
            for lo in range(0, total - shift, step):
                hi = min(lo + step, total - shift)
                p[lo:hi] = torch.linalg.vecdot(flat[lo:hi], flat[lo + shift : hi + shift])
            src = tuple(slice(max(0, -k), s - max(0, k)) for k, s in zip(d, size, strict=True))
            out[d] = torch.zeros(size, dtype=torch.float64)
            out[d][src] = p.view(size)[src]
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

    def inverse_norms(self, maps: list[AxisMap], rows: slice) -> Tensor:
        """``1 / |f(v)|`` (float32) at the candidate voxels ``rows`` (of axis 0) x all x all."""
        perm = [m.level_axis for m in maps]
        n = [self.shape[p] for p in perm]
        h = self.h.permute(*perm, *(3 + p for p in perm))  # types, then cells, candidate order
        h = h.permute(0, 3, 1, 4, 2, 5).reshape(3 * n[0], 3 * n[1], 3 * n[2])
        m0 = maps[0].quadratic_matrix(n[0])[rows]
        x = (m0 @ h.reshape(3 * n[0], -1)).view(-1, 3 * n[1], 3 * n[2])
        x = torch.matmul(maps[1].quadratic_matrix(n[1]), x)
        x = x @ maps[2].quadratic_matrix(n[2]).T
        return x.clamp_min_(0).sqrt_().clamp_min_(1e-12).reciprocal_().float()

    def dots(self, queries: Tensor, perm: list[int]) -> Tensor:
        """``D = F q`` ``[n_p0, n_p1, n_p2, Q]`` for queries ``[Q, C]``, axes in candidate order."""
        d = self.cells.reshape(-1, self.cells.shape[-1]) @ queries.T
        return d.view(*self.shape, -1).permute(*perm, 3).contiguous()


@dataclass
class _Chunks:
    """The last candidate axis cut into chunks of ``width`` voxels, for one level: each chunk
    reads cells ``index[c]`` with the interpolation weights ``weights[c]`` ``[width, window]``."""

    index: Tensor  # long [n_chunks * window]
    weights: Tensor  # float32 [n_chunks, width, window]
    window: int


def _chunks(m: AxisMap, n_cells: int, width: int) -> _Chunks:
    n_vox = len(m.base)
    n_chunks = -(-n_vox // width)
    upper = m.base + (m.frac > 0).long()
    lo = torch.full((n_chunks,), n_cells, dtype=torch.long)
    hi = torch.zeros(n_chunks, dtype=torch.long)
    chunk = torch.arange(n_vox) // width
    lo.scatter_reduce_(0, chunk, m.base, "amin")
    hi.scatter_reduce_(0, chunk, upper, "amax")
    window = int((hi - lo).max()) + 1
    start = lo.clamp_max(n_cells - window)
    index = (start[:, None] + torch.arange(window)).reshape(-1)
    weights = torch.zeros((n_chunks * width, window), dtype=torch.float64)
    rows = torch.arange(n_vox)
    local = m.base - start[chunk]
    weights.index_put_((rows, local), 1 - m.frac, accumulate=True)
    weights.index_put_((rows, (local + 1).clamp_max(window - 1)), m.frac, accumulate=True)
    return _Chunks(index, weights.float().view(n_chunks, width, window), window)


class ExactVoxelScorer:
    """Mean per-level cosine of unit query descriptors against B's upsampled levels, exactly."""

    def __init__(self, levels_b: Sequence[tuple[Tensor, np.ndarray]]) -> None:
        self.levels = [LevelCells(data, aff) for data, aff in levels_b]
        self.grid: Grid | None = None

    def maps_for(self, cand: Grid) -> list[list[AxisMap]] | None:
        out = []
        for lv in self.levels:
            m = axis_maps(lv.affine, lv.shape, cand)
            if m is None:
                return None
            out.append(m)
        return out

    def prepare(self, cand: Grid) -> bool:
        """Axis maps and ``1 / |f_l(v)|`` for every voxel of ``cand`` (once per volume: it does
        not depend on the query); False if a level is not axis-aligned with ``cand``."""
        maps = self.maps_for(cand)
        if maps is None:
            return False
        self.grid, self.maps = cand, maps
        per_row = cand.shape[1] * cand.shape[2]
        rows = max(1, WORK_ELEMENTS // (8 * per_row))
        self.inverse = [torch.empty(cand.shape) for _ in self.levels]
        for r0 in range(0, cand.shape[0], rows):
            sl = slice(r0, min(r0 + rows, cand.shape[0]))
            for lv, lmaps, inv in zip(self.levels, maps, self.inverse, strict=True):
                inv[sl] = lv.inverse_norms(lmaps, sl)
        return True

    def _perm(self, i: int) -> list[int]:
        return [m.level_axis for m in self.maps[i]]

    def best_global(self, queries: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Best flat voxel index ``[Q]`` of the prepared grid and its score ``[Q]`` for query
        descriptors ``queries[l]`` ``[Q, C_l]`` (unit length)."""
        shape = self.grid.shape
        n_q = queries[0].shape[0]
        chunks = [
            _chunks(m[2], lv.shape[m[2].level_axis], CHUNK_VOXELS)
            for lv, m in zip(self.levels, self.maps, strict=True)
        ]
        k_total = sum(c.window for c in chunks)
        n_chunks = -(-shape[2] // CHUNK_VOXELS)
        width = n_chunks * CHUNK_VOXELS
        # D_l interpolated along candidate axis 1 (all rows of axis 0), per query of a batch
        cells = sum(lv.shape[m[0].level_axis] * shape[1] * lv.shape[m[2].level_axis]
                    for lv, m in zip(self.levels, self.maps, strict=True))  # fmt: skip
        batch = max(1, min(n_q, 2 * WORK_ELEMENTS // cells))
        best = torch.full((n_q,), float("-inf"))
        best_idx = torch.zeros(n_q, dtype=torch.long)
        mats = [
            [m[0].matrix(lv.shape[m[0].level_axis]), m[1].matrix(lv.shape[m[1].level_axis])]
            for lv, m in zip(self.levels, self.maps, strict=True)
        ]
        for q0 in range(0, n_q, batch):
            qs = slice(q0, min(q0 + batch, n_q))
            nb = qs.stop - qs.start
            along1 = []
            for i, (lv, q) in enumerate(zip(self.levels, queries, strict=True)):
                d = lv.dots(q[qs], self._perm(i))  # [n0, n1, n2, nb]
                d = torch.matmul(mats[i][1], d.view(d.shape[0], d.shape[1], -1))
                along1.append(d.view(d.shape[0], -1))  # [n0, N1 * n2 * nb]
            # per candidate row: scores, chunk matrices and the cells' values they read
            per_row = shape[1] * (width * (nb + k_total) + n_chunks * k_total * nb)
            rows = max(1, WORK_ELEMENTS // per_row)
            for r0 in range(0, shape[0], rows):
                sl = slice(r0, min(r0 + rows, shape[0]))
                n_rows = (sl.stop - sl.start) * shape[1]
                score = torch.zeros((n_rows * n_chunks, CHUNK_VOXELS, nb))
                for d, (a0, _), ch, inv in zip(along1, mats, chunks, self.inverse, strict=True):
                    t = (a0[sl] @ d).view(n_rows, -1, nb).index_select(1, ch.index)
                    w = F.pad(inv[sl], (0, width - shape[2])).view(n_rows, n_chunks, -1, 1)
                    m = (w * ch.weights).view(n_rows * n_chunks, CHUNK_VOXELS, ch.window)
                    score.baddbmm_(m, t.view(n_rows * n_chunks, ch.window, nb))
                    del t, w, m
                score = score.view(n_rows, width, nb)[:, : shape[2]]
                v_col, a_col = score.max(1)  # first maximum within each row
                v, a_row = v_col.max(0)  # first row holding the maximum
                better = v > best[qs]
                flat = (r0 * shape[1] + a_row) * shape[2] + a_col[a_row, torch.arange(nb)]
                best[qs] = torch.where(better, v, best[qs])
                best_idx[qs] = torch.where(better, flat, best_idx[qs])
        return best_idx, best / len(self.levels)

    def best_in_boxes(
        self, queries: Sequence[Tensor], centres_mm: np.ndarray, half_mm: np.ndarray
    ) -> tuple[Tensor, Tensor]:
        """Best flat voxel index and score ``[Q]`` among the voxels of the prepared grid whose
        world position lies within ``half_mm`` (per world axis) of each query's centre.

        A query whose box holds no voxel gets index -1 and score ``-inf``.
        """
        grid = self.grid
        n_q = len(centres_mm)
        lo, hi = box_bounds_many(grid, centres_mm, half_mm)
        sizes = np.maximum(hi - lo + 1, 0)
        best = torch.full((n_q,), float("-inf"))
        best_idx = torch.full((n_q,), -1, dtype=torch.long)
        found = np.flatnonzero(np.all(sizes > 0, axis=1))
        if len(found) == 0:
            return best_idx, best
        k = sizes[found].max(0)
        lo_t, hi_t = torch.from_numpy(lo[found]), torch.from_numpy(hi[found])
        cells = max(  # the largest window of cells one query reads, over the levels
            lv.cells.shape[-1] * int(np.prod([_window(m, lo_t[:, a], hi_t[:, a], lv.shape)
                                              for a, m in enumerate(maps)]))
            for lv, maps in zip(self.levels, self.maps, strict=True)
        )  # fmt: skip
        batch = max(1, WORK_ELEMENTS // (8 * int(np.prod(k)) + 2 * cells))
        mat = torch.from_numpy(grid.array_index_to_world_matrix())
        for b0 in range(0, len(found), batch):
            sel = found[b0 : b0 + batch]
            idx = [torch.from_numpy(lo[sel, a])[:, None] + torch.arange(k[a]) for a in range(3)]
            inside = [i <= torch.from_numpy(hi[sel, a])[:, None] for a, i in enumerate(idx)]
            idx = [i.clamp_max(grid.shape[a] - 1) for a, i in enumerate(idx)]
            allowed = _in_box(mat, idx, inside, centres_mm[sel], half_mm)
            score = torch.zeros((len(sel), *k))
            for lv, maps, q, inv in zip(self.levels, self.maps, queries, self.inverse, strict=True):
                win = _box_dots(lv, maps, q[torch.from_numpy(sel)], idx)
                score.addcmul_(
                    win,
                    inv[
                        idx[0][:, :, None, None], idx[1][:, None, :, None], idx[2][:, None, None, :]
                    ],
                )
            score.masked_fill_(~allowed, float("-inf"))
            v, a = score.view(len(sel), -1).max(1)
            t = torch.from_numpy(sel)
            best[t] = v
            vox = np.stack(np.unravel_index(a.numpy(), tuple(k)), 1) + lo[sel]
            best_idx[t] = torch.from_numpy(np.ravel_multi_index(vox.T, grid.shape))
        ok = torch.isfinite(best)
        best_idx[~ok] = -1
        return best_idx, best / len(self.levels)


def _window(m: AxisMap, lo: Tensor, hi: Tensor, level_shape: tuple[int, ...]) -> int:
    """Cells along one level axis that the widest of the boxes ``lo..hi`` (voxels) reads."""
    spread = (m.base[hi] - m.base[lo]).abs().max()
    return min(level_shape[m.level_axis], int(spread) + 2)


def _box_dots(lv: LevelCells, maps: list[AxisMap], q: Tensor, idx: list[Tensor]) -> Tensor:
    """``q . f(v)`` ``[B, k0, k1, k2]`` at the box voxels ``idx`` (per axis ``[B, k_a]``)."""
    nb = q.shape[0]
    bases, fracs, starts, windows = [], [], [], []
    for a, m in enumerate(maps):
        b, w = m.base[idx[a]], m.frac[idx[a]].float()
        n = lv.shape[m.level_axis]
        s = b.min(1).values
        win = min(n, int((b.max(1).values - s).max()) + 2)
        s = s.clamp_max(n - win)
        bases.append(b - s[:, None])
        fracs.append(w)
        starts.append(s[:, None] + torch.arange(win))
        windows.append(win)
    # the query's window of cells, channels last, candidate axis order
    perm = [m.level_axis for m in maps]
    cells = lv.cells.permute(*perm, 3)
    feats = cells[
        starts[0][:, :, None, None], starts[1][:, None, :, None], starts[2][:, None, None, :]
    ]  # [B, w0, w1, w2, C]
    out = torch.bmm(feats.view(nb, -1, feats.shape[-1]), q[:, :, None]).view(nb, *windows)
    for a in range(3):  # separable linear interpolation, axis a at dimension a + 1
        b = bases[a]
        upper = (b + 1).clamp_max(windows[a] - 1)
        view = [nb] + [1] * 3
        view[a + 1] = -1
        expand = list(out.shape)
        expand[a + 1] = b.shape[1]
        lo = out.gather(a + 1, b.view(view).expand(expand))
        hi = out.gather(a + 1, upper.view(view).expand(expand))
        out = torch.lerp(lo, hi, fracs[a].view(view))
    return out


def _in_box(
    mat: Tensor, idx: list[Tensor], inside: list[Tensor], centres: np.ndarray, half: np.ndarray
) -> Tensor:
    """Voxels (per-axis indices ``idx``) within the world box around each centre (float64).

    A world axis along one array axis (any axis-aligned grid) is tested on that axis alone.
    """
    inside = list(inside)
    c = torch.from_numpy(np.asarray(centres, dtype=np.float64))
    full = []
    for w in range(3):
        axes = [a for a in range(3) if mat[w, a] != 0]
        if len(axes) == 1:
            a = axes[0]
            pos = mat[w, 3] - c[:, w : w + 1] + mat[w, a] * idx[a].double()
            inside[a] = inside[a] & (pos.abs() <= float(half[w]))
        else:
            full.append(w)
    ok = inside[0][:, :, None, None] & inside[1][:, None, :, None] & inside[2][:, None, None, :]
    for w in full:
        pos = (mat[w, 3] - c[:, w]).view(-1, 1, 1, 1)
        for a in range(3):
            view = [-1, 1, 1, 1]
            view[a + 1] = idx[a].shape[1]
            pos = pos + mat[w, a] * idx[a].double().view(view)
        ok &= pos.abs() <= float(half[w])
    return ok


def box_bounds_many(
    grid: Grid, centres_mm: np.ndarray, half_mm: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive array-index bounds ``(lo, hi)`` ``[Q, 3]`` of the voxels of ``grid`` that may
    lie within each axis-aligned world box (``hi < lo`` on some axis when the box misses)."""
    half = np.broadcast_to(np.asarray(half_mm, dtype=np.float64), (3,))
    signs = np.array(np.meshgrid(*[[-1.0, 1.0]] * 3, indexing="ij")).reshape(3, -1).T
    corners = np.asarray(centres_mm, dtype=np.float64)[:, None] + signs * half  # [Q, 8, 3]
    idx = grid.world_to_array_index(corners.reshape(-1, 3)).reshape(-1, 8, 3)
    lo = np.maximum(np.floor(idx.min(1) - 1e-6), 0).astype(np.int64)
    hi = np.minimum(np.ceil(idx.max(1) + 1e-6), np.asarray(grid.shape) - 1).astype(np.int64)
    return lo, hi


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
    out = torch.zeros((len(idx), data.shape[0]), dtype=torch.float64)
    for corner in _CORNERS:
        at = torch.from_numpy(np.minimum(base + np.asarray(corner), shape - 1))
        w = torch.ones(len(idx), dtype=torch.float64)
        for ax, c in enumerate(corner):
            w = w * (frac[:, ax] if c else 1.0 - frac[:, ax])
        out += w[:, None] * data[:, at[:, 0], at[:, 1], at[:, 2]].T.double()
    return F.normalize(out, dim=1, eps=1e-12).float()
