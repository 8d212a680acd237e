"""bpr-diffusion features: deterministic for a seed, on correct world grids, shift-equivariant."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from medfeat_bpr_diffusion.backbone import BPRDiffusionBackbone
from medfeat_bpr_diffusion.config import BackboneConfig

from medfeat.geometry import Grid, Image


def backbone(tiny_unet, context, **kw):
    cfg = {
        "random_init": True,
        "unet": tiny_unet,
        "patch_size_vox": [8, 16, 16],
        "preprocess": {"spacing_mm": [5.0, 5.0, 5.0]},
        "timesteps": [10, 60],
        "feature_levels": [0, 1],
        **kw,
    }
    return BPRDiffusionBackbone(BackboneConfig.model_validate(cfg), context)


def test_features_are_deterministic_for_a_seed(ct_pair, tiny_unet, context):
    a = backbone(tiny_unet, context).extract(ct_pair[0])
    b = backbone(tiny_unet, context).extract(ct_pair[0])
    c = backbone(tiny_unet, context, noise_seed=1).extract(ct_pair[0])
    assert [lv.data.shape[0] for lv in a.levels] == [2 * 4, 2 * 8]  # channels x timesteps
    for la, lb, lc in zip(a.levels, b.levels, c.levels, strict=True):
        assert torch.equal(la.data, lb.data)
        assert not torch.allclose(la.data, lc.data)
    t10 = backbone(tiny_unet, context, timesteps=[10]).extract(ct_pair[0])
    assert torch.equal(t10.levels[0].data, a.levels[0].data[:4])  # t=10 block comes first


def test_levels_carry_world_grids_and_follow_a_shifted_image(ct_pair, tiny_unet, context):
    image = ct_pair[0]
    fmap = backbone(tiny_unet, context).extract(image)
    fine, coarse = fmap.levels[0].grid, fmap.levels[1].grid
    assert np.allclose(fine.direction, np.eye(3)) and fine.spacing == (5.0, 5.0, 5.0)
    assert coarse.spacing == (10.0, 10.0, 10.0) and coarse.shape == tuple(
        n // 2 for n in fine.shape
    )
    # a coarse voxel centre is the centre of the 2x2x2 fine voxels it covers
    fine_centre = fine.array_index_to_world(np.array([[0.5, 0.5, 0.5]]))
    assert np.allclose(coarse.array_index_to_world(np.zeros((1, 3))), fine_centre)
    # the body box lies inside the feature grid
    lo, hi = fine.world_extent()
    body = image.grid.array_index_to_world(np.argwhere(image.numpy() > -500).astype(float))
    assert (body.min(0) >= lo - 1e-6).all() and (body.max(0) <= hi + 1e-6).all()

    offset = np.array([7.5, -5.0, 12.5])  # mm, 3 x 2 x 5 voxels
    g = image.grid
    shifted = Image(
        image.numpy(), Grid(g.shape, g.spacing, tuple(np.add(g.origin, offset)), g.direction)
    )
    moved = backbone(tiny_unet, context).extract(shifted)
    for a, b in zip(fmap.levels, moved.levels, strict=True):
        assert b.grid.shape == a.grid.shape
        assert np.allclose(np.subtract(b.grid.origin, a.grid.origin), offset)
        assert torch.allclose(a.data, b.data, atol=1e-5)


def test_a_random_init_backbone_is_recorded_as_random_weights(tiny_unet, context):
    assert context.random_weights == []
    backbone(tiny_unet, context)
    backbone(tiny_unet, context, noise_seed=1)  # recorded once per run
    assert context.random_weights == ["bpr-diffusion backbone DiffusionUNet3d (seed 0)"]


def test_bad_options_are_config_errors(tiny_unet, context):
    from medfeat.errors import ConfigError

    with pytest.raises(ConfigError, match="feature_levels"):
        backbone(tiny_unet, context, feature_levels=[0, 5])
    with pytest.raises(ConfigError, match="timesteps"):
        backbone(tiny_unet, context, timesteps=[1000])
    with pytest.raises(ConfigError, match="divisible"):
        backbone(tiny_unet, context, patch_size_vox=[8, 15, 16])


def test_core_matcher_finds_a_shifted_image_through_bpr_diffusion_features(
    ct_pair, tiny_unet, context
):
    """The features mix with the core's correspondence matcher: a world shift is recovered exactly."""
    from medfeat.builtins.optimisers import FeatureMatcher, MatcherConfig
    from medfeat.geometry import PointSet

    image = ct_pair[0]
    g = image.grid
    offset = np.array([5.0, 10.0, -5.0])
    shifted = Image(
        image.numpy(), Grid(g.shape, g.spacing, tuple(np.add(g.origin, offset)), g.direction)
    )
    bb = backbone(tiny_unet, context)
    fa, fb = bb.extract(image), bb.extract(shifted)
    fine = fa.levels[0].grid
    queries = fine.array_index_to_world(
        np.array([[3.0, 5.0, 6.0], [4.0, 8.0, 9.0], [5.0, 4.0, 10.0]])
    )
    matches = FeatureMatcher(MatcherConfig()).match(fa, fb, PointSet(queries))
    assert np.allclose(matches.points.points, queries + offset, atol=1e-4)
