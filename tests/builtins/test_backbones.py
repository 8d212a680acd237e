"""The built-in backbones: MIND-SSC context levels, built from the registry."""

import numpy as np
import pytest
import torch

from medfeat.geometry import Grid, Image


def test_mind_context_levels_are_pooled_blocks_on_their_own_grids(build):
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


def test_mind_context_pooling_rejects_factor_one(build):
    from medfeat.errors import MedfeatError

    with pytest.raises((MedfeatError, ValueError)):
        build("backbone", "mind-ssc", context_pooling_vox=[1])
