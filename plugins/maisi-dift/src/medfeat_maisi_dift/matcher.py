"""``meddift-matcher``: MedDIFT / MedDIFT-Box correspondence on any multi-level features.

The candidates are every voxel of B's *image* grid, as the reference's argmax over the upsampled
volume, without ever upsampling the 960-channel features. By default the scores come exactly
from the levels' native cells (:mod:`medfeat_maisi_dift.voxel_search`); otherwise, and for levels
not axis-aligned with B's image, the engine's memory-bounded matcher
(:func:`medfeat.engine.matcher.match_points`) interpolates every channel at every candidate.
"""

from __future__ import annotations

import numpy as np
import torch

from medfeat.api import FeatureMap, Grid, Matches, PointSet
from medfeat_maisi_dift.config import MedDiftMatcherConfig


class MedDiftMatcher:
    """Query points of A -> the voxel of B with the highest mean per-level cosine similarity."""

    memory_remedy = "Lower chunk_candidates, or match fewer points at once."

    def __init__(self, config: MedDiftMatcherConfig) -> None:
        self.config = config

    def estimate_memory_bytes(self, features_a: FeatureMap, features_b: FeatureMap, n: int) -> int:
        c = sum(int(lv.data.shape[0]) for lv in features_a.levels)
        cmax = max(int(lv.data.shape[0]) for lv in features_a.levels)
        k = self.config.chunk_candidates
        cells = sum(lv.grid.num_voxels for lv in features_b.levels)
        copies = 4 * c * cells  # channels-last (or edge-padded) copies of B's levels
        if self.config.candidates == "image" and self.config.image_scoring == "native-cells":
            from medfeat_maisi_dift.voxel_search import WORK_ELEMENTS

            # 27 quadratic-form maps (float64) per cell and 14 products while building them,
            # B's inverse norms per level and image voxel, and the batches' work buffers
            src = features_b.source
            inverse = 4 * len(features_b.levels) * (src.grid.num_voxels if src is not None else 0)
            return copies + 8 * (27 + 14) * cells + 16 * 4 * WORK_ELEMENTS + inverse + 4 * n * c
        return copies + 4 * (n * c + k * c + 8 * k * cmax + 2 * n * k) + n * k

    def match(self, features_a: FeatureMap, features_b: FeatureMap, queries: PointSet) -> Matches:
        from medfeat.api import ConfigError, match_points

        la, lb = features_a.levels, features_b.levels
        if len(la) != len(lb) or any(
            a.data.shape[0] != b.data.shape[0] for a, b in zip(la, lb, strict=True)
        ):
            raise ConfigError(
                "meddift-matcher needs the same feature levels and channels for both images.",
                remedy="Use one backbone and the same feature transforms for A and B.",
            )
        # channels-last storage once: match_points' own channels-last copy is then a no-op view
        feats_a = [_channels_last(lv.data) for lv in la]
        feats_b = [_channels_last(lv.data) for lv in lb]
        aff_a = [lv.grid.array_index_to_world_matrix() for lv in la]
        aff_b = [lv.grid.array_index_to_world_matrix() for lv in lb]
        src_a = features_a.source  # queries outside image A are unmatched
        extent_a = (
            None if src_a is None else (src_a.grid.array_index_to_world_matrix(), src_a.grid.shape)
        )
        if self.config.candidates == "finest-level":
            result = match_points(
                feats_a, aff_a, feats_b, aff_b, queries.points,
                box_half_size_mm=self.config.box_half_size_mm,
                extent_a=extent_a,
                chunk=self.config.chunk_candidates,
            )  # fmt: skip
            return _matches(result.positions_mm.numpy(), result.scores.numpy())
        if features_b.source is None:
            raise ConfigError(
                "meddift-matcher with candidates: image needs B's image grid, but the "
                "features of B carry no source image.",
                remedy="Use candidates: finest-level, or a backbone that keeps the source.",
            )
        grid = features_b.source.grid
        if self.config.image_scoring == "native-cells":
            found = self._match_native_cells(la, lb, grid, queries, src_a)
            if found is not None:
                return found
        feats_a.append(torch.zeros((1, 1, 1, 1)))
        aff_a.append(aff_a[-1])
        n_levels = len(feats_b)

        def run(points: np.ndarray, cand: Grid):
            # A one-channel all-zero level on the candidate grid only defines the candidate voxels:
            # its cosine is 0 for every pair, so the argmax is that of the real levels and the
            # score is rescaled. It costs 4 bytes per candidate voxel, not 4 * 960.
            r = match_points(
                feats_a, aff_a,
                [*feats_b, torch.zeros((1, *cand.shape))],
                [*aff_b, cand.array_index_to_world_matrix()],
                points,
                candidate_level=n_levels,
                box_half_size_mm=self.config.box_half_size_mm,
                extent_a=extent_a,
                chunk=self.config.chunk_candidates,
            )  # fmt: skip
            return r.positions_mm.numpy(), r.scores.numpy() * (n_levels + 1) / n_levels

        if self.config.box_half_size_mm is None:
            pos, scores = run(queries.points, grid)
        else:  # crop the candidates to each query's box before computing any similarity
            pos = np.full(queries.points.shape, np.nan)
            scores = np.full(len(queries), np.nan)
            for i, q in enumerate(queries.points):
                cand = box_grid(grid, q, self.config.box_half_size_mm)
                if cand is not None:
                    p, sc = run(q[None], cand)
                    pos[i], scores[i] = p[0], sc[0]
        return _matches(pos, scores)

    def _match_native_cells(
        self, la, lb, grid: Grid, queries: PointSet, image_a=None
    ) -> Matches | None:
        """Exact image-voxel search from the native cells; None if a level is not axis-aligned."""
        from medfeat_maisi_dift.voxel_search import ExactVoxelScorer, describe_points

        scorer = ExactVoxelScorer([(lv.data, lv.grid.array_index_to_world_matrix()) for lv in lb])
        if not scorer.prepare(grid):  # B's inverse norms, once for every query
            return None
        pts = np.asarray(queries.points, dtype=np.float64).reshape(-1, 3)
        desc = [describe_points(lv.data, lv.grid.array_index_to_world_matrix(), pts) for lv in la]
        half = self.config.box_half_size_mm
        if half is None:
            idx, best = scorer.best_global(desc)
        else:
            half_v = np.broadcast_to(np.asarray(half, dtype=np.float64), (3,))
            idx, best = scorer.best_in_boxes(desc, pts, half_v)
        idx, scores = idx.numpy(), best.numpy().astype(np.float64)
        pos = np.full(pts.shape, np.nan)
        ok = (idx >= 0) & inside_levels([image_a] if image_a is not None else la, pts)
        pos[ok] = _world_of(grid, idx[ok])
        return _matches(pos, scores)


def _world_of(grid: Grid, flat: np.ndarray) -> np.ndarray:
    """World positions (mm) of flat array indices of ``grid``."""
    return grid.array_index_to_world(np.stack(np.unravel_index(flat, grid.shape), 1).astype(float))


def _matches(pos: np.ndarray, scores: np.ndarray) -> Matches:
    """Per-query positions (NaN: unmatched) and scores as :class:`Matches`: unmatched queries
    are marked, never an error; the correspondence pipeline reports and counts them."""
    return Matches.from_positions(pos, scores, name="matches in B")


def inside_levels(levels, points_mm: np.ndarray) -> np.ndarray:
    """``[N]`` bool: which points lie inside the voxel-edge box of at least one of ``levels``
    (anything with a ``grid``: feature levels, images). A query outside image A (or, without
    it, outside every level of A) is left unmatched."""
    inside = np.zeros(len(points_mm), dtype=bool)
    for lv in levels:
        idx = lv.grid.world_to_array_index(np.asarray(points_mm, dtype=np.float64))
        inside |= np.all((idx >= -0.5) & (idx <= np.asarray(lv.grid.shape) - 0.5), axis=1)
    return inside


def _channels_last(data: torch.Tensor) -> torch.Tensor:
    """The same ``[C, d, h, w]`` values, stored channels-last (a view of a contiguous copy)."""
    return data.float().permute(1, 2, 3, 0).contiguous().permute(3, 0, 1, 2)


def box_bounds(
    grid: Grid, centre_mm: np.ndarray, half_mm: float | list[float]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Inclusive array-index bounds ``(lo, hi)`` of the voxels of ``grid`` that may lie within
    the axis-aligned world box, or None when it misses the grid."""
    half = np.broadcast_to(np.asarray(half_mm, dtype=np.float64), (3,))
    signs = np.array(np.meshgrid(*[[-1.0, 1.0]] * 3, indexing="ij")).reshape(3, -1).T
    idx = grid.world_to_array_index(centre_mm[None] + signs * half)
    lo = np.maximum(np.floor(idx.min(0) - 1e-6), 0).astype(int)
    hi = np.minimum(np.ceil(idx.max(0) + 1e-6), np.asarray(grid.shape) - 1).astype(int)
    if np.any(hi < lo):
        return None
    return lo, hi


def sub_grid(grid: Grid, lo: np.ndarray, hi: np.ndarray) -> Grid:
    """The voxels ``lo..hi`` (inclusive array indices) of ``grid`` as a grid."""
    origin = grid.array_index_to_world(lo.astype(np.float64)[None])[0]
    return Grid(tuple(int(v) for v in hi - lo + 1), grid.spacing, tuple(origin), grid.direction)


def box_grid(grid: Grid, centre_mm: np.ndarray, half_mm: float | list[float]) -> Grid | None:
    """The sub-grid of ``grid`` holding every voxel within the axis-aligned world box, or None."""
    bounds = box_bounds(grid, centre_mm, half_mm)
    return None if bounds is None else sub_grid(grid, *bounds)


def make_meddift_matcher(config: MedDiftMatcherConfig, context) -> MedDiftMatcher:
    return MedDiftMatcher(config)
