"""The built-in convex-adam optimiser and feature matcher, in world space, built from the registry."""

import numpy as np
import torch

from medfeat.components import FeatureLevel, FeatureMap
from medfeat.geometry import Grid, Image, PointSet


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


def test_convex_adam_recovers_a_world_translation_on_a_flipped_grid(build):
    grid = flipped_grid()
    rng = np.random.default_rng(1)
    lo, hi = grid.world_extent()
    centres = rng.uniform(lo + 20, hi - 20, size=(12, 3))
    shift = np.array([3.0, -6.0, 4.5])  # world mm, fixed -> moving
    fixed = blob_image(grid, centres)
    moving = blob_image(grid, centres + shift)
    backbone = build("backbone", "mind-ssc", radius_mm=3, dilation_mm=6)
    opt = build(
        "optimiser",
        "convex-adam",
        grid_spacing_mm=6,
        search_radius_mm=18,
        io_spacing_mm=6,
        io_control_spacing_mm=12,
        adam_lr_mm=6,
        adam_iterations=40,
    )
    res = opt.register(fixed, moving, backbone.extract(fixed), backbone.extract(moving))
    interior = res.forward.numpy()[:, 8:-8, 8:-8, 8:-8].reshape(3, -1).mean(1)
    assert np.allclose(interior, shift, atol=1.0), interior
    mapped = res.forward.transform_points(centres)
    assert np.linalg.norm(mapped - (centres + shift), axis=1).mean() < 1.0
    # the inverse maps moving points back
    back = res.inverse.transform_points(centres + shift)
    assert np.linalg.norm(back - centres, axis=1).mean() < 1.5


def test_feature_matcher_finds_shifted_points_exactly(build):
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
