"""Exact image-voxel scores from native cells (voxel_search.py) against explicit upsampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from medfeat_maisi_dift.config import MedDiftMatcherConfig
from medfeat_maisi_dift.matcher import MedDiftMatcher, inside_levels
from medfeat_maisi_dift.preprocess import reorient_to_ras
from medfeat_maisi_dift.voxel_search import ExactVoxelScorer, axis_maps, describe_points

from medfeat.components import FeatureLevel, FeatureMap
from medfeat.geometry import Grid, Image, PointSet


def upsampled(level: FeatureLevel, world: np.ndarray) -> torch.Tensor:
    """The level trilinearly sampled at world points (border clamp), float64 ``[M, C]``."""
    idx = torch.from_numpy(level.grid.world_to_array_index(world).copy())
    shape = level.data.shape[1:]
    idx = torch.stack([idx[:, d].clamp(0, shape[d] - 1) for d in range(3)], 1)
    norm = (2 * idx / torch.tensor([max(s - 1, 1) for s in shape]) - 1).flip(-1)
    vol = level.data.double()[None]
    return F.grid_sample(vol, norm[None, None, None], align_corners=True)[0, :, 0, 0].T


def brute_force(fa: FeatureMap, fb: FeatureMap, queries: np.ndarray, box_mm=None):
    """Upsample every level of B to every voxel of B's image, normalise, mean cosine, argmax."""
    grid = fb.source.grid
    world = grid.array_index_to_world(np.argwhere(np.ones(grid.shape)).astype(float))
    score = torch.zeros((len(queries), len(world)), dtype=torch.float64)
    for la, lb in zip(fa.levels, fb.levels, strict=True):
        qa = F.normalize(upsampled(la, queries), dim=1)
        score += qa @ F.normalize(upsampled(lb, world), dim=1).T
    score /= len(fa.levels)
    if box_mm is not None:
        inside = np.all(np.abs(world[None] - queries[:, None]) <= box_mm, axis=2)
        score[~torch.from_numpy(inside)] = -np.inf
    best, arg = score.max(1)
    return world[arg.numpy()], best.numpy()


def random_levels(image_grid: Grid, level_base: Grid, seed: int, channels=(7, 5, 3)) -> FeatureMap:
    """Random levels at 1/4, 1/2 and 1/1 of ``level_base`` (same box), on B's image."""
    gen = torch.Generator().manual_seed(seed)
    levels = []
    for c, f in zip(channels, (4, 2, 1), strict=True):
        shape = tuple(max(1, s // f) for s in level_base.shape)
        data = torch.randn((c, *shape), generator=gen)
        levels.append(FeatureLevel(data, level_base.resized(shape)))
    src = Image(np.zeros(image_grid.shape, np.float32), image_grid)
    return FeatureMap(levels, source=src)


def permuted_grid(shape=(9, 11, 13), origin=(1.0, -2.0, 3.0)) -> Grid:
    """File axes along world S, P, L: the backbone's RAS reorientation permutes and flips them."""
    direction = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    return Grid.from_shape(shape, spacing=(1.4, 1.1, 1.7), origin=origin, direction=direction)


def as_backbone_levels(grid: Grid, seed: int) -> FeatureMap:
    """Levels on the RAS-reoriented grid of ``grid``, as maisi-dift builds them."""
    _, ras = reorient_to_ras(Image(np.zeros(grid.shape, np.float32), grid))
    return random_levels(grid, ras, seed)


CASES = {
    "axis-aligned": lambda: (
        Grid.from_shape((10, 12, 9), spacing=(2.0, 1.5, 1.0), origin=(1.0, 2.0, 3.0)),
        Grid.from_shape((11, 9, 12), spacing=(1.8, 1.4, 1.2), origin=(-1.0, 0.0, 4.0)),
    ),
    "permuted-and-flipped": lambda: (permuted_grid(), permuted_grid((10, 9, 12), (0.0, -1.0, 2.0))),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("box_mm", [None, 4.0])
@pytest.mark.parametrize("scoring", ["native-cells", "interpolated-descriptors"])
def test_same_argmax_and_scores_as_brute_force(case, box_mm, scoring):
    ga, gb = CASES[case]()
    fa, fb = as_backbone_levels(ga, 0), as_backbone_levels(gb, 1)
    rng = np.random.default_rng(0)  # queries inside B's box, so that every box has candidates,
    # and inside A (a query outside A is unmatched: test_matcher.py)
    drawn = gb.array_index_to_world(rng.uniform(0, np.asarray(gb.shape) - 1, (60, 3)))
    queries = drawn[inside_levels([fa.source], drawn)][:9]
    assert len(queries) == 9
    cfg = MedDiftMatcherConfig(box_half_size_mm=box_mm, image_scoring=scoring, chunk_candidates=200)
    got = MedDiftMatcher(cfg).match(fa, fb, PointSet(queries))
    want_pos, want_score = brute_force(fa, fb, queries, box_mm)
    np.testing.assert_allclose(got.points.points, want_pos, atol=1e-9)
    np.testing.assert_allclose(got.scores, want_score, atol=1e-5)


def test_levels_of_the_backbone_are_axis_aligned_with_the_file_grid():
    g = permuted_grid()
    fb = as_backbone_levels(g, 2)
    for lv in fb.levels:
        maps = axis_maps(lv.grid.array_index_to_world_matrix(), lv.grid.shape, g)
        assert maps is not None
        assert sorted(m.level_axis for m in maps) == [0, 1, 2]
        assert [m.level_axis for m in maps] != [0, 1, 2]  # the permutation is really exercised


def test_inverse_norms_equal_explicit_upsampling():
    g = permuted_grid()
    fb = as_backbone_levels(g, 3)
    world = g.array_index_to_world(np.argwhere(np.ones(g.shape)).astype(float))
    scorer = ExactVoxelScorer(
        [(lv.data, lv.grid.array_index_to_world_matrix()) for lv in fb.levels]
    )
    assert scorer.prepare(g)
    for lv, got in zip(fb.levels, scorer.inverse, strict=True):
        want = 1 / upsampled(lv, world).norm(dim=1)
        torch.testing.assert_close(got.reshape(-1).double(), want, rtol=2e-6, atol=0)


def test_oblique_levels_fall_back_to_interpolation_and_stay_exact():
    gb = Grid.from_shape((8, 9, 10), spacing=1.3)
    c, s = np.cos(0.3), np.sin(0.3)
    rot = Grid.from_shape((8, 9, 10), spacing=1.3, direction=[[c, -s, 0], [s, c, 0], [0, 0, 1]])
    fb = random_levels(gb, rot, 4)
    fa = random_levels(gb, rot, 5)
    assert (
        axis_maps(fb.levels[0].grid.array_index_to_world_matrix(), fb.levels[0].grid.shape, gb)
        is None
    )
    queries = gb.array_index_to_world(np.random.default_rng(1).uniform(1, 7, (5, 3)))
    got = MedDiftMatcher(MedDiftMatcherConfig()).match(fa, fb, PointSet(queries))
    want_pos, want_score = brute_force(fa, fb, queries)
    np.testing.assert_allclose(got.points.points, want_pos, atol=1e-9)
    np.testing.assert_allclose(got.scores, want_score, atol=1e-5)


@pytest.mark.parametrize("box_mm", [None, 3.0])
def test_small_batches_slabs_and_chunks_give_the_same_result(monkeypatch, box_mm):
    """Many query batches, candidate slabs and last-axis chunks (ragged) equal brute force."""
    import medfeat_maisi_dift.voxel_search as vs

    ga, gb = CASES["permuted-and-flipped"]()
    fa, fb = as_backbone_levels(ga, 6), as_backbone_levels(gb, 7)
    queries = gb.array_index_to_world(np.random.default_rng(2).uniform(0, 8, (6, 3)))
    want_pos, want_score = brute_force(fa, fb, queries, box_mm)
    monkeypatch.setattr(vs, "WORK_ELEMENTS", 2000)
    monkeypatch.setattr(vs, "CHUNK_VOXELS", 5)
    got = MedDiftMatcher(MedDiftMatcherConfig(box_half_size_mm=box_mm)).match(
        fa, fb, PointSet(queries)
    )
    np.testing.assert_allclose(got.points.points, want_pos, atol=1e-9)
    np.testing.assert_allclose(got.scores, want_score, atol=1e-5)


def test_boxes_outside_the_image_give_no_candidate():
    ga, gb = CASES["axis-aligned"]()
    fa, fb = as_backbone_levels(ga, 8), as_backbone_levels(gb, 9)
    inside = gb.array_index_to_world(np.array([[3.0, 4.0, 5.0]]))
    queries = np.concatenate([inside, inside + 500.0])
    scorer = ExactVoxelScorer(
        [(lv.data, lv.grid.array_index_to_world_matrix()) for lv in fb.levels]
    )
    assert scorer.prepare(gb)
    desc = [
        describe_points(lv.data, lv.grid.array_index_to_world_matrix(), queries) for lv in fa.levels
    ]
    idx, best = scorer.best_in_boxes(desc, queries, np.full(3, 3.0))
    want_pos, want_score = brute_force(fa, fb, inside, 3.0)
    got = gb.array_index_to_world(np.array(np.unravel_index(int(idx[0]), gb.shape), float)[None])
    np.testing.assert_allclose(got[0], want_pos[0], atol=1e-9)
    assert abs(float(best[0]) - want_score[0]) < 1e-5
    assert int(idx[1]) == -1 and float(best[1]) == -np.inf


def test_box_search_on_an_oblique_image_grid():
    """Levels aligned with an oblique image: the world box is not aligned with the voxels."""
    c, s = np.cos(0.4), np.sin(0.4)
    g = Grid.from_shape(
        (9, 10, 11), spacing=(1.2, 1.0, 1.5), direction=[[c, -s, 0], [s, c, 0], [0, 0, 1]]
    )
    fa, fb = random_levels(g, g, 1), random_levels(g, g, 2)
    queries = g.array_index_to_world(np.random.default_rng(0).uniform(1, 8, (7, 3)))
    got = MedDiftMatcher(MedDiftMatcherConfig(box_half_size_mm=3.0)).match(
        fa, fb, PointSet(queries)
    )
    want_pos, want_score = brute_force(fa, fb, queries, 3.0)
    np.testing.assert_allclose(got.points.points, want_pos, atol=1e-9)
    np.testing.assert_allclose(got.scores, want_score, atol=1e-5)
