"""meddift-matcher: reference semantics (argmax over every image voxel of B) without upsampling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from medfeat_maisi_dift.config import MedDiftMatcherConfig
from medfeat_maisi_dift.matcher import MedDiftMatcher

from medfeat.cli.main import main
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


# ----------------------------------------------- queries with no match
MATCHER_PATHS = [
    {"candidates": "finest-level"},
    {"candidates": "image", "image_scoring": "native-cells"},
    {"candidates": "image", "image_scoring": "interpolated-descriptors"},
]


@pytest.mark.parametrize("box_mm", [None, 4.0])
@pytest.mark.parametrize("options", MATCHER_PATHS, ids=lambda o: "-".join(o.values()))
def test_queries_outside_a_or_whose_box_misses_b_are_unmatched(options, box_mm):
    ga = Grid.from_shape((16, 16, 16), spacing=1.5)  # x 0..22.5 mm, voxel edges -0.75..23.25
    gb = Grid.from_shape((16, 16, 16), spacing=1.5, origin=(12.0, 0.0, 0.0))  # x 12..34.5 mm
    fa, fb = feature_map(ga, 5), feature_map(gb, 6)
    inside = np.array([[16.0, 8.0, 8.0], [20.0, 12.0, 6.0]])
    outside_a = [24.5, 8.0, 8.0]  # inside B only
    box_misses_b = [3.0, 8.0, 8.0]  # inside A; x +-4 mm ends before B begins
    queries = np.vstack([inside, outside_a, box_misses_b])
    cfg = MedDiftMatcherConfig(box_half_size_mm=box_mm, chunk_candidates=300, **options)
    got = MedDiftMatcher(cfg).match(fa, fb, PointSet(queries))  # never raises
    want = [True, True, False, box_mm is None]
    np.testing.assert_array_equal(got.query_mask(), want)
    assert got.num_queries == 4 and got.num_unmatched == want.count(False)
    assert np.isnan(got.positions_mm()[2]).all() and np.isnan(got.query_scores()[2])
    assert np.isfinite(got.points.points).all() and np.isfinite(np.asarray(got.scores)).all()
    alone = MedDiftMatcher(cfg).match(fa, fb, PointSet(inside))
    assert alone.matched is None  # every query matched: nothing to mark
    np.testing.assert_allclose(got.positions_mm()[:2], alone.points.points, atol=1e-9)
    np.testing.assert_allclose(got.query_scores()[:2], alone.scores, atol=1e-6)


@pytest.mark.parametrize("options", MATCHER_PATHS, ids=lambda o: "-".join(o.values()))
def test_no_query_matched_gives_empty_matches_not_an_error(options):
    g = Grid.from_shape((12, 12, 12), spacing=2.0)
    fa = feature_map(g, 7)
    far = np.array([[200.0, 0.0, 0.0], [0.0, -90.0, 5.0]])
    got = MedDiftMatcher(MedDiftMatcherConfig(box_half_size_mm=3.0, **options)).match(
        fa, fa, PointSet(far)
    )
    assert len(got.points) == 0 and got.num_unmatched == 2


# ----------------------------------------------- other backbones' features, from YAML
PHANTOM = """
data:
  name: breathing-phantom
  shape: [24, 32, 32]
  spacing_mm: 4.0
  num_vessels: 12
"""


def run_yaml(tmp_path: Path, text: str) -> dict:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    out = tmp_path / "out"
    assert main(["-q", "run", str(path), "--out", str(out)]) == 0
    (case,) = [p for p in out.iterdir() if (p / "metrics.json").is_file()]
    return json.loads((case / "metrics.json").read_text())


def test_mind_features_with_the_meddift_matcher(tmp_path):
    """Weight-free features recover a known deformation through the MedDIFT matcher."""
    metrics = run_yaml(
        tmp_path,
        "kind: correspondence\nrequires: [medfeat-maisi-dift]\n"
        + PHANTOM
        + "backbone: {name: mind-ssc, radius_mm: 4.0, dilation_mm: 8.0}\n"
        "matcher: {name: meddift-matcher, box_half_size_mm: 12.0}\n",
    )
    assert metrics["tre_mm_after"]["mean"] < metrics["tre_mm_before"]["mean"]


def test_dinov3_features_with_the_meddift_matcher(tmp_path):
    pytest.importorskip("medfeat_dinov3", reason="the medfeat-dinov3 plugin is not installed")
    metrics = run_yaml(
        tmp_path,
        "kind: correspondence\nrequires: [medfeat-maisi-dift, medfeat-dinov3]\n"
        + PHANTOM
        + "backbone: {name: dinov3-slices, model: tiny, random_weights: true, "
        "slice_stride_vox: 2, patch_spacing_mm: 8.0}\n"
        "matcher: {name: meddift-matcher, box_half_size_mm: 12.0}\n",
    )
    assert metrics["num_queries"] == metrics["tre_mm_after"]["n"]
    # each match lies in the 12 mm box around its query
    assert metrics["tre_mm_after"]["max"] <= metrics["tre_mm_before"]["max"] + 12 * 3**0.5


@pytest.mark.realdata
@pytest.mark.slow
def test_lung4dct_pair_all_landmarks(shared_data, tiny_config):
    from medfeat_maisi_dift.backbone import MaisiDiftBackbone
    from medfeat_maisi_dift.config import MedDiftMatcherConfig
    from medfeat_maisi_dift.matcher import MedDiftMatcher

    from medfeat.builtins.datasets import Lung4DCTConfig, Lung4DCTDataset

    ds = Lung4DCTDataset(Lung4DCTConfig(root=shared_data / "lung4dct", cases=["case_002"]))
    case = next(ds.registration_cases())
    bb = MaisiDiftBackbone(tiny_config(size_multiple_vox=128), seed=0)
    fa, fb = bb.extract(case.fixed), bb.extract(case.moving)
    # 160x128x160 voxels stretch to 128^3 (round(1.25) = 1): the finest level is 32^3
    assert fa.levels[3].data.shape[1:] == (32, 32, 32)
    m = MedDiftMatcher(MedDiftMatcherConfig(box_half_size_mm=10.0)).match(fa, fb, case.fixed_points)
    pts = m.points.points
    assert pts.shape == (375, 3)
    # every match is a voxel of T50 within the box around its query
    idx = case.moving.grid.world_to_array_index(pts)
    np.testing.assert_allclose(idx, np.round(idx), atol=1e-6)
    assert np.all(np.abs(pts - case.fixed_points.points) <= 10.0 + 1e-6)
