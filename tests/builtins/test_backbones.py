"""The built-in backbones: MIND-SSC context levels, built from the registry."""

import numpy as np
import pytest
import torch

from medfeat.geometry import Grid, Image


def test_mind_context_levels_are_pooled_blocks_on_their_own_grids(build):
    grid = Grid((13, 14, 15), (1.5, 2.0, 2.5), (5.0, -3.0, 7.0), np.diag([1.0, -1.0, -1.0]))
    rng = np.random.default_rng(4)
    image = Image(rng.random(grid.shape).astype(np.float32), grid)
    fmap = build("backbone", "mind-ssc", radius_mm=2, context_pooling_mm=[6.0]).extract(image)
    fine, coarse = fmap.levels
    # 6 mm is 2, 3 and 4 voxels along the array axes (k, j, i) of 2.5, 2 and 1.5 mm
    assert coarse.data.shape == (12, 6, 4, 3)
    assert np.allclose(coarse.grid.spacing, (6.0, 6.0, 5.0))
    # pooled voxel (1, 2, 1) is the mean of the block it covers, centred on the block centre
    block = fine.data[:, 2:4, 6:9, 4:8]
    assert torch.allclose(coarse.data[:, 1, 2, 1], block.mean((1, 2, 3)), atol=1e-6)
    centre = grid.array_index_to_world(np.array([[2.5, 7.0, 5.5]]))
    assert np.allclose(coarse.grid.array_index_to_world(np.array([[1.0, 2.0, 1.0]])), centre)


def test_mind_lengths_are_mm_along_every_axis(build):
    """On an anisotropic grid the radius and dilation become different voxel counts per axis:
    the descriptors equal those of the engine called with those counts."""
    from medfeat.engine.mind import mind_ssc

    grid = Grid.from_shape((10, 12, 14), (1.0, 2.0, 4.0))  # array axes (k, j, i): 4, 2, 1 mm
    rng = np.random.default_rng(0)
    image = Image(rng.random(grid.shape).astype(np.float32), grid)
    fmap = build("backbone", "mind-ssc", radius_mm=4, dilation_mm=4).extract(image)
    expected = mind_ssc(image.tensor()[None, None], radius=(1, 2, 4), dilation=(1, 2, 4))[0]
    assert torch.allclose(fmap.levels[0].data, expected)
    isotropic = mind_ssc(image.tensor()[None, None], radius=2, dilation=2)[0]
    assert not torch.allclose(fmap.levels[0].data, isotropic)


def test_mind_refuses_voxel_options_and_absurd_lengths(build):
    from medfeat.errors import MedfeatError

    for options in ({"radius_vox": 1}, {"radius_mm": 50}, {"dilation_mm": 0}):
        with pytest.raises((MedfeatError, ValueError)):
            build("backbone", "mind-ssc", **options)


def test_mind_context_pooling_rejects_factor_one(build):
    from medfeat.errors import MedfeatError

    with pytest.raises((MedfeatError, ValueError)):
        build("backbone", "mind-ssc", context_pooling_mm=[0.0])
