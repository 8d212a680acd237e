"""``meddift-matcher``: MedDIFT / MedDIFT-Box correspondence on any multi-level features.

It is the engine's memory-bounded matcher (:func:`medfeat.engine.matcher.match_points`: per-level
trilinear descriptors at query points, candidate chunks, running argmax) with the reference's
candidate set: every voxel of B's *image* grid, as the reference's argmax over the upsampled
volume, without ever upsampling the 960-channel features.
"""

from __future__ import annotations

import torch

from medfeat.components import FeatureMap, Matches
from medfeat.geometry import PointSet
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
        copies = 4 * c * sum(lv.grid.num_voxels for lv in features_b.levels)  # channels-last copies
        return copies + 4 * (n * c + k * c + 8 * k * cmax + 2 * n * k) + n * k

    def match(self, features_a: FeatureMap, features_b: FeatureMap, queries: PointSet) -> Matches:
        from medfeat.engine.matcher import match_points
        from medfeat.errors import ConfigError

        la, lb = features_a.levels, features_b.levels
        if len(la) != len(lb) or any(
            a.data.shape[0] != b.data.shape[0] for a, b in zip(la, lb, strict=True)
        ):
            raise ConfigError(
                "meddift-matcher needs the same feature levels and channels for both images.",
                remedy="Use one backbone and the same feature transforms for A and B.",
            )
        feats_a = [lv.data for lv in la]
        feats_b = [lv.data for lv in lb]
        aff_a = [lv.grid.array_index_to_world_matrix() for lv in la]
        aff_b = [lv.grid.array_index_to_world_matrix() for lv in lb]
        candidate_level = None
        if self.config.candidates == "image":
            if features_b.source is None:
                raise ConfigError(
                    "meddift-matcher with candidates: image needs B's image grid, but the "
                    "features of B carry no source image.",
                    remedy="Use candidates: finest-level, or a backbone that keeps the source.",
                )
            # A one-channel all-zero level on B's image grid only defines the candidate voxels:
            # its cosine is 0 for every pair, so the argmax is that of the real levels and the
            # score is rescaled below. It costs 4 bytes per voxel, not 4 * 960.
            grid = features_b.source.grid
            feats_a.append(torch.zeros((1, 1, 1, 1)))
            aff_a.append(aff_a[-1])
            feats_b.append(torch.zeros((1, *grid.shape)))
            aff_b.append(grid.array_index_to_world_matrix())
            candidate_level = len(feats_b) - 1
        result = match_points(
            feats_a,
            aff_a,
            feats_b,
            aff_b,
            queries.points,
            candidate_level=candidate_level,
            box_half_size_mm=self.config.box_half_size_mm,
            chunk=self.config.chunk_candidates,
        )
        scores = result.scores
        if candidate_level is not None:
            scores = scores * len(feats_b) / (len(feats_b) - 1)
        pts = PointSet(result.positions_mm.numpy(), meta={"name": "matches in B"})
        return Matches(pts, scores.numpy())


def make_meddift_matcher(config: MedDiftMatcherConfig, context) -> MedDiftMatcher:
    return MedDiftMatcher(config)
