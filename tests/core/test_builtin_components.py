"""Built-in components behave correctly in physical space, through the registry as users get them."""

import json

import numpy as np
import pytest
import torch

from medfeat.cli.main import main
from medfeat.components import FeatureLevel, FeatureMap
from medfeat.context import RunContext
from medfeat.geometry import Grid, Image, PointSet
from medfeat.plugins import get_registry


def build(kind, name, **options):
    return get_registry().get(kind, name).build(options, RunContext())


def blob_image(grid: Grid, centres_world, sigma_mm=6.0):
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in grid.shape], indexing="ij"), -1).reshape(
        -1, 3
    )
    world = grid.array_index_to_world(idx)
    val = np.zeros(len(world))
    for c in centres_world:
        val += np.exp(-np.sum((world - c) ** 2, 1) / (2 * sigma_mm**2))
    return Image(val.reshape(grid.shape).astype(np.float32), grid)


def flipped_grid(shape=(32, 32, 32)):
    return Grid(shape, (3.0, 3.0, 3.0), (10.0, -20.0, 90.0), np.diag([1.0, -1.0, -1.0]))


def test_convex_adam_recovers_a_world_translation_on_a_flipped_grid():
    grid = flipped_grid()
    rng = np.random.default_rng(1)
    lo, hi = grid.world_extent()
    centres = rng.uniform(lo + 20, hi - 20, size=(12, 3))
    shift = np.array([3.0, -6.0, 4.5])  # world mm, fixed -> moving
    fixed = blob_image(grid, centres)
    moving = blob_image(grid, centres + shift)
    backbone = build("backbone", "mind-ssc", radius_vox=1)
    opt = build(
        "optimiser", "convex-adam", grid_spacing_vox=2, search_radius_vox=3, adam_iterations=40
    )
    res = opt.register(fixed, moving, backbone.extract(fixed), backbone.extract(moving))
    interior = res.forward.numpy()[:, 8:-8, 8:-8, 8:-8].reshape(3, -1).mean(1)
    assert np.allclose(interior, shift, atol=1.0), interior
    mapped = res.forward.transform_points(centres)
    assert np.linalg.norm(mapped - (centres + shift), axis=1).mean() < 1.0
    # the inverse maps moving points back
    back = res.inverse.transform_points(centres + shift)
    assert np.linalg.norm(back - centres, axis=1).mean() < 1.5


def test_feature_matcher_finds_shifted_points_exactly():
    grid = flipped_grid((24, 24, 24))
    rng = np.random.default_rng(2)
    a = torch.from_numpy(rng.standard_normal((16, *grid.shape)).astype(np.float32))
    shift_vox = (2, -3, 1)
    b = torch.roll(a, shifts=shift_vox, dims=(1, 2, 3))
    queries_idx = rng.integers(6, 18, size=(10, 3)).astype(float)
    queries = PointSet(grid.array_index_to_world(queries_idx))
    fa, fb = FeatureMap([FeatureLevel(a, grid)]), FeatureMap([FeatureLevel(b, grid)])
    for box in (None, 15.0):
        matches = build(
            "matcher", "feature-matcher", box_half_size_mm=box, chunk_candidates=1000
        ).match(fa, fb, queries)
        expected = grid.array_index_to_world(queries_idx + np.array(shift_vox))
        assert np.allclose(matches.points.points, expected, atol=1e-4)
        assert np.allclose(matches.scores, 1.0, atol=1e-5)


def test_fuse_levels_resamples_through_world_space():
    fine = Grid.from_shape((16, 16, 16), 2.0, origin=(0.0, 0.0, 0.0))
    coarse = fine.resized((4, 4, 4))

    # a linear ramp along world x, sampled on both grids
    def ramp(g):
        idx = np.stack(np.meshgrid(*[np.arange(s) for s in g.shape], indexing="ij"), -1).reshape(
            -1, 3
        )
        return torch.from_numpy(g.array_index_to_world(idx)[:, 0].reshape(g.shape)).float()[None]

    fmap = FeatureMap(
        [FeatureLevel(ramp(fine) + 100, fine), FeatureLevel(ramp(coarse) + 100, coarse)]
    )
    fused = build("feature_transform", "fuse-levels", normalise=False).apply([fmap])[0]
    assert fused.levels[0].grid.same_as(fine)
    interior = (slice(None), slice(4, 12), slice(4, 12), slice(4, 12))
    assert torch.allclose(
        fused.levels[0].data[0][interior[1:]], fused.levels[0].data[1][interior[1:]], atol=1e-3
    )


def test_joint_pca_shares_axes_and_l2_normalises():
    grid = Grid.from_shape((6, 6, 6))
    rng = np.random.default_rng(3)
    basis = rng.standard_normal((40, 3))
    a = torch.from_numpy((basis @ rng.standard_normal((3, 216))).reshape(40, 6, 6, 6)).float()
    b = torch.from_numpy((basis @ rng.standard_normal((3, 216))).reshape(40, 6, 6, 6)).float()
    maps = [FeatureMap([FeatureLevel(a, grid)]), FeatureMap([FeatureLevel(b, grid)])]
    out = build("feature_transform", "joint-pca", dims=3).apply(maps)
    assert out[0].levels[0].data.shape == (3, 6, 6, 6)
    # rank-3 data: the 3 joint axes keep all of the energy of both inputs
    for src, dst in zip((a, b), out, strict=True):
        assert torch.allclose(dst.levels[0].data.norm(), src.norm(), rtol=1e-3)
    normed = build("feature_transform", "l2-normalise").apply(maps)[0].levels[0].data
    assert torch.allclose(normed.norm(dim=0), torch.ones(6, 6, 6), atol=1e-5)


def test_similarities_and_regularisers_from_registry():
    x = torch.rand(1, 2, 8, 8, 8)
    for name in ("ssd", "ncc", "local-ncc", "cosine", "nmi"):
        sim = build("similarity", name)
        assert float(sim(x, x)) <= float(sim(x, torch.rand(1, 2, 8, 8, 8))) + 1e-6, name
    disp = torch.zeros(1, 3, 8, 8, 8)
    assert float(build("regulariser", "diffusion", weight=2.0)(disp, (1, 1, 1))) == 0.0
    assert float(build("regulariser", "bending-energy")(disp + 1.5, (1, 1, 1))) == 0.0


def test_correspondence_pipeline_mind_matcher(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(
        "kind: correspondence\n"
        "data: {name: breathing-phantom, shape: [40, 40, 40], spacing_mm: 4.0, amplitude_mm: 8.0, num_vessels: 20}\n"
        "backbone: {name: mind-ssc, radius_vox: 1}\n"
        "matcher: {name: feature-matcher, box_half_size_mm: 16.0}\n"
    )
    assert main(["-q", "run", str(p), "--out", str(tmp_path / "o")]) == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())["cases"][
        "breathing-phantom-seed0"
    ]
    assert m["num_queries"] == 20 and "tre_mm_after" in m
    rows = (
        (tmp_path / "o" / "breathing-phantom-seed0" / "matches_in_moving_world_lps_mm.csv")
        .read_text()
        .splitlines()
    )
    assert rows[0].startswith("x_mm_lps") and len(rows) == 21
    # every match lies inside the query's box in B's world space, scores are cosines
    from medfeat.phantoms import breathing_phantom

    queries = breathing_phantom((40, 40, 40), 4.0, 8.0, 20).fixed_points.points
    table = np.array([[float(v) for v in r.split(",")] for r in rows[1:]])
    assert np.all(np.abs(table[:, :3] - queries) <= 16.0 + 1e-6)
    assert np.all(np.abs(table[:, 3]) <= 1.0 + 1e-6)


@pytest.mark.slow
def test_sitk_ffd_reduces_phantom_tre():
    from medfeat.phantoms import breathing_phantom

    pair = breathing_phantom((32, 32, 32), 5.0, amplitude_mm=8.0, num_vessels=20)
    ffd = build(
        "optimiser",
        "sitk-ffd",
        control_point_spacing_mm=[80.0, 40.0],
        iterations_per_level=[20, 15],
        shrink_factors=[2, 1],
        smoothing_sigmas_vox=[1.0, 0.0],
        metric_samples=1000,
        compute_inverse=False,
    )
    res = ffd.register(pair.fixed, pair.moving)
    before = np.linalg.norm(pair.fixed_points.points - pair.moving_points.points, axis=1).mean()
    after = np.linalg.norm(
        res.forward.transform_points(pair.fixed_points.points) - pair.moving_points.points, axis=1
    ).mean()
    assert after < 0.6 * before


def test_auto_lung_mask_on_phantom():
    from medfeat.masks import auto_mask
    from medfeat.phantoms import breathing_phantom

    pair = breathing_phantom((40, 40, 40), 4.0)
    mask = auto_mask(pair.fixed, "lung").numpy().astype(bool)
    lungs = pair.fixed_labels.numpy() == 2
    assert (mask & lungs).sum() > 0.95 * lungs.sum()  # covers the lungs (it is dilated by 2 voxels)
    assert (mask & (pair.fixed_labels.numpy() == 0)).sum() == 0  # never reaches outside the body


def test_mind_context_levels_are_pooled_blocks_on_their_own_grids():
    grid = Grid((13, 14, 15), (1.5, 2.0, 2.5), (5.0, -3.0, 7.0), np.diag([1.0, -1.0, -1.0]))
    rng = np.random.default_rng(4)
    image = Image(rng.random(grid.shape).astype(np.float32), grid)
    fmap = build("backbone", "mind-ssc", radius_vox=1, context_pooling_vox=[3]).extract(image)
    fine, coarse = fmap.levels
    assert coarse.data.shape == (12, 4, 4, 5)
    assert np.allclose(coarse.grid.spacing, (4.5, 6.0, 7.5))
    # pooled voxel (1, 2, 3) is the mean of the 3^3 block it covers, centred on the block centre
    block = fine.data[:, 3:6, 6:9, 9:12]
    assert torch.allclose(coarse.data[:, 1, 2, 3], block.mean((1, 2, 3)), atol=1e-6)
    centre = grid.array_index_to_world(np.array([[4.0, 7.0, 10.0]]))
    assert np.allclose(coarse.grid.array_index_to_world(np.array([[1.0, 2.0, 3.0]])), centre)


def test_mind_context_pooling_rejects_factor_one():
    from medfeat.errors import MedfeatError

    with pytest.raises((MedfeatError, ValueError)):
        build("backbone", "mind-ssc", context_pooling_vox=[1])
