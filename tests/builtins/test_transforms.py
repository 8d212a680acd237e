"""The built-in feature transforms (fuse-levels, joint-pca, l2-normalise), built from the registry."""

import numpy as np
import torch

from medfeat.components import FeatureLevel, FeatureMap
from medfeat.geometry import Grid


def test_fuse_levels_resamples_through_world_space(build):
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


def test_joint_pca_shares_axes_and_l2_normalises(build):
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
