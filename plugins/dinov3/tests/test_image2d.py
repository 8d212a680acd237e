"""dinov3-2d: DINOv3 on 2D images, built through the registry; tokens with geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medfeat.context import RunContext
from medfeat.errors import CheckpointError, ConfigError, DataError
from medfeat.geometry import Grid, Image
from medfeat.plugins import get_registry


def _build(**options):
    entry = get_registry().get("backbone", "dinov3-2d")
    return entry.build({"model": "tiny", "random_weights": True, **options}, RunContext())


def test_tokens_of_an_rgb_image_on_the_images_physical_box():
    backbone = _build(image_size_px=64)
    grid = Grid((48, 80), (0.5, 0.25), (10.0, -4.0), np.array([[0.0, 1.0], [1.0, 0.0]]))
    rgb = (np.random.default_rng(0).random((3, 48, 80)) * 255).astype(np.uint8)
    fmap = backbone.extract(Image(rgb, grid, {"name": "frame"}))
    level = fmap.levels[0]
    assert level.data.shape == (backbone.dim, 4, 4)  # 64 px / 16 px patches
    assert level.grid.same_as(grid.resized((4, 4)))
    lo, hi = grid.world_extent()
    glo, ghi = level.grid.world_extent()
    # same voxel-edge box: token centres lie half a token inside the image's edges
    half_token = np.abs(level.grid.direction) @ np.array(level.grid.spacing) / 2
    half_pixel = np.abs(grid.direction) @ np.array(grid.spacing) / 2
    np.testing.assert_allclose(glo - half_token, lo - half_pixel, atol=1e-6)
    np.testing.assert_allclose(ghi + half_token, hi + half_pixel, atol=1e-6)
    batched = backbone.tokens(torch.from_numpy(rgb).float()[None] / 255)
    torch.testing.assert_close(batched[0], level.data)  # extract == tokens on [0, 1] RGB


def test_grey_images_are_repeated_to_rgb_and_3d_images_refused():
    backbone = _build(image_size_px=32)
    grey = np.random.default_rng(1).random((40, 40)).astype(np.float32) * 1000 - 500
    grid = Grid.from_shape((40, 40))
    a = backbone.extract(Image(grey, grid, {"name": "grey"})).levels[0].data
    b = backbone.extract(Image(np.stack([grey] * 3), grid, {"name": "rgb"})).levels[0].data
    torch.testing.assert_close(a, b)
    with pytest.raises(DataError, match="dinov3-slices"):
        backbone.extract(Image(np.zeros((4, 40, 40), np.float32), Grid.from_shape((4, 40, 40))))


def test_sizes_and_weights_are_checked():
    with pytest.raises(ConfigError, match="multiple of 16"):
        _build(image_size_px=50)
    entry = get_registry().get("backbone", "dinov3-2d")
    with pytest.raises(CheckpointError, match="random_weights"):
        entry.build({"model": "tiny"}, RunContext())
