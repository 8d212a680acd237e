"""meddift-matcher: reference semantics (argmax over every image voxel of B) without upsampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from medfeat_maisi_dift.config import MedDiftMatcherConfig
from medfeat_maisi_dift.matcher import MedDiftMatcher

from medfeat.components import FeatureLevel, FeatureMap
from medfeat.geometry import Grid, Image, PointSet


def feature_map(image_grid: Grid, seed: int, channels=(6, 4)) -> FeatureMap:
    """Random levels at 1/4 and 1/2 of the image grid (same box), as the backbone produces."""
    gen = torch.Generator().manual_seed(seed)
    levels = []
    for c, f in zip(channels, (4, 2), strict=True):
        shape = tuple(max(1, s // f) for s in image_grid.shape)
        levels.append(
            FeatureLevel(torch.randn((c, *shape), generator=gen), image_grid.resized(shape))
        )
    src = Image(np.zeros(image_grid.shape, np.float32), image_grid)
    return FeatureMap(levels, source=src)


def brute_force(fa: FeatureMap, fb: FeatureMap, queries: np.ndarray, box_mm=None) -> np.ndarray:
    """Upsample every level of B to B's image grid (border clamp), normalise, full argmax."""
    grid = fb.source.grid
    world = grid.array_index_to_world(np.argwhere(np.ones(grid.shape)).astype(float))
    score_b = np.zeros((len(queries), len(world)))
    for la, lb in zip(fa.levels, fb.levels, strict=True):
        qa = _sample(la, queries)
        cb = _sample(lb, world)
        score_b += qa @ cb.T
    if box_mm is not None:
        inside = np.all(np.abs(world[None] - queries[:, None]) <= box_mm, axis=2)
        score_b[~inside] = -np.inf
    return world[score_b.argmax(1)]


def _sample(level: FeatureLevel, world: np.ndarray) -> np.ndarray:
    idx = torch.from_numpy(level.grid.world_to_array_index(world).copy()).float()
    shape = level.data.shape[1:]
    idx = torch.stack([idx[:, d].clamp(0, shape[d] - 1) for d in range(3)], 1)
    norm = (2 * idx / torch.tensor([max(s - 1, 1) for s in shape]) - 1).flip(-1)
    out = F.grid_sample(level.data[None], norm[None, None, None], align_corners=True)[0, :, 0, 0]
    return F.normalize(out.T, dim=1).numpy()


@pytest.mark.parametrize("box_mm", [None, 6.0])
def test_matches_brute_force_over_image_voxels(box_mm):
    ga = Grid.from_shape((12, 10, 14), spacing=(2.0, 1.5, 1.0), origin=(1.0, 2.0, 3.0))
    gb = Grid.from_shape((11, 12, 13), spacing=(1.8, 1.4, 1.2), origin=(-1.0, 0.0, 4.0))
    fa, fb = feature_map(ga, 0), feature_map(gb, 1)
    queries = ga.array_index_to_world(np.random.default_rng(0).uniform(1, 9, (7, 3)))
    cfg = MedDiftMatcherConfig(box_half_size_mm=box_mm, chunk_candidates=300)
    got = MedDiftMatcher(cfg).match(fa, fb, PointSet(queries))
    np.testing.assert_allclose(got.points.points, brute_force(fa, fb, queries, box_mm), atol=1e-6)
    assert np.all(np.asarray(got.scores) <= 1 + 1e-6)


def test_identical_features_match_the_query_voxel():
    g = Grid.from_shape((16, 16, 16), spacing=1.5, origin=(0.0, 0.0, 0.0))
    fa = feature_map(g, 3)
    queries = g.array_index_to_world(np.array([[4.0, 5.0, 6.0], [10.0, 3.0, 12.0]]))
    got = MedDiftMatcher(MedDiftMatcherConfig()).match(fa, fa, PointSet(queries))
    np.testing.assert_allclose(got.points.points, queries, atol=1e-9)
    np.testing.assert_allclose(got.scores, 1.0, atol=1e-5)  # rescaled: mean cosine of real levels


def test_finest_level_candidates_lie_on_the_level_grid():
    g = Grid.from_shape((16, 16, 16), spacing=1.0)
    fa = feature_map(g, 4)
    q = g.array_index_to_world(np.array([[7.0, 7.0, 7.0]]))
    got = MedDiftMatcher(MedDiftMatcherConfig(candidates="finest-level")).match(fa, fa, PointSet(q))
    idx = fa.levels[1].grid.world_to_array_index(got.points.points)
    np.testing.assert_allclose(idx, np.round(idx), atol=1e-9)
