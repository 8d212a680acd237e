"""Feature geometry: slice views, token-centre placement, shifts, orientation, interpolation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from medfeat_dinov3.backbone import SliceBackbone
from medfeat_dinov3.checkpoints import SliceModel, load_dinov3
from medfeat_dinov3.config import Dinov3SlicesConfig
from medfeat_dinov3.slicing import fill_between, normalise_intensity, slice_plan, slice_view

from medfeat.geometry import Grid, Image
from medfeat.images2d import IMAGENET_MEAN, IMAGENET_STD

PERMUTED = np.array([[0, 0, 1], [-1, 0, 0], [0, 1, 0]], dtype=float)  # oblique storage order


@pytest.mark.parametrize("direction", [np.eye(3), np.diag([-1.0, -1.0, 1.0]), PERMUTED])
@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_slice_view_keeps_every_voxel_in_place(direction, plane):
    grid = Grid((5, 6, 7), (1.0, 2.0, 3.0), (10.0, -20.0, 5.0), direction)
    data = torch.arange(grid.num_voxels, dtype=torch.float32).reshape(grid.shape)
    view = slice_view(grid, plane)
    viewed = view.apply(data)
    assert tuple(viewed.shape) == view.grid.shape
    idx = np.argwhere(np.ones(view.grid.shape))
    world = view.grid.array_index_to_world(idx)
    back = np.rint(grid.world_to_array_index(world)).astype(int)
    assert np.array_equal(viewed.numpy()[tuple(idx.T)], data.numpy()[tuple(back.T)])
    normal = {"axial": 2, "coronal": 1, "sagittal": 0}[plane]
    # axis 0 of the view steps along the plane's world normal
    assert np.argmax(np.abs(view.grid.direction[:, 2])) == normal


class PatchMean(torch.nn.Module):
    """A stand-in ViT whose tokens are the mean intensity of their patch (undoing ImageNet norm)."""

    def __init__(self, patch: int = 16) -> None:
        super().__init__()
        self.patch = patch

    def forward(self, pixel_values):
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        grey = (pixel_values * std + mean)[:, :1]
        tokens = torch.nn.functional.avg_pool2d(grey, self.patch).flatten(2).transpose(1, 2)
        prefix = torch.zeros(tokens.shape[0], 5, 1)
        return type("Out", (), {"last_hidden_state": torch.cat([prefix, tokens], 1)})


def patch_mean_backbone(**options) -> SliceBackbone:
    config = Dinov3SlicesConfig(model="tiny", random_weights=True, modality="mr", **options)
    return SliceBackbone(config, SliceModel(PatchMean(), 16, 5, 1, "patch mean"), "cpu", "test")


@pytest.mark.parametrize("patch_grid", [(7, 5), (12, 20), (30, 9)])
def test_tokens_sit_at_their_patch_centres(patch_grid):
    """A linear ramp in world x, y: each token (mean of its resized patch) must equal the ramp at the
    world position its grid gives it - down- and up-sampled, flipped storage included."""
    grid = Grid((4, 24, 30), (1.5, 2.0, 2.5), (3.0, 4.0, -7.0), np.diag([-1.0, 1.0, 1.0]))
    idx = np.argwhere(np.ones(grid.shape))
    world = grid.array_index_to_world(idx)
    ramp = (0.2 + 0.003 * world[:, 0] + 0.002 * world[:, 1]).reshape(grid.shape)
    image = Image(ramp.astype(np.float32), grid)
    backbone = patch_mean_backbone(
        patch_grid=patch_grid, slice_stride_vox=1, mr_percentiles=(0, 100)
    )
    level = backbone.extract(image).levels[0]
    assert level.data.shape == (1, 4, *patch_grid)
    lo, hi = ramp.min(), ramp.max()  # percentile (0, 100) normalisation is this affine map
    tidx = np.argwhere(np.ones(level.grid.shape))
    tw = level.grid.array_index_to_world(tidx)
    expected = ((0.2 + 0.003 * tw[:, 0] + 0.002 * tw[:, 1]) - lo) / (hi - lo)
    got = level.data[0].numpy()[tuple(tidx.T)]
    # interior tokens (bilinear resizing clamps at the slice border)
    pos = level.grid.world_to_array_index(tw)
    src = grid.world_to_array_index(tw)
    inside = np.all((src[:, 1:] > 0.5) & (src[:, 1:] < np.array(grid.shape[1:]) - 1.5), axis=1)
    inside &= np.all(pos[:, 1:] >= 0, axis=1)
    margin = np.array([grid.shape[1] / patch_grid[0], grid.shape[2] / patch_grid[1]]) / 2
    inside &= np.all(
        (src[:, 1:] > margin + 0.5) & (src[:, 1:] < np.array(grid.shape[1:]) - 1.5 - margin), axis=1
    )
    assert inside.sum() > 0
    np.testing.assert_allclose(got[inside], expected[inside], atol=2e-5)


@pytest.fixture(scope="module")
def local_vit():
    """Tiny random DINOv3 with zero layer scale: blocks are identities, tokens depend on their patch
    only - the real patch embedding, RoPE path and final norm, without global attention mixing."""
    model = load_dinov3(Dinov3SlicesConfig(model="tiny", random_weights=True, random_seed=2))
    with torch.no_grad():
        for name, p in model.module.named_parameters():
            if "layer_scale" in name:
                p.zero_()
    return model


def test_shift_by_one_patch_shifts_features_by_one_token(local_vit):
    grid = Grid.from_shape((3, 64, 64), 1.0)
    rng = np.random.default_rng(0)
    data = np.zeros(grid.shape, np.float32)
    data[:, 8:56, 8:40] = rng.random((3, 48, 32))
    shifted = np.zeros_like(data)
    shifted[:, :, 16:] = data[:, :, :-16]  # one patch (patch_grid 4 x 4 over 64 voxels) along x
    config = Dinov3SlicesConfig(
        model="tiny", random_weights=True, patch_grid=(4, 4), slice_stride_vox=1, modality="ct"
    )
    backbone = SliceBackbone(config, local_vit, "cpu", "dinov3")
    a = backbone.extract(Image(data * 400 - 150, grid)).levels[0]
    b = backbone.extract(Image(shifted * 400 - 150, grid)).levels[0]
    assert a.grid.same_as(b.grid)
    assert a.grid.spacing == (16.0, 16.0, 1.0)
    np.testing.assert_allclose(a.grid.origin, (7.5, 7.5, 0.0))  # centre of the first 16-voxel patch
    torch.testing.assert_close(b.data[..., 1:3], a.data[..., 0:2], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(b.data[..., 0], a.data[..., 0])


def test_storage_orientation_does_not_change_features():
    """The same physical image stored LPS and RAS-flipped gives the same tokens on the same grid,
    with the full (attention-mixing) tiny ViT."""
    lps = Grid((4, 20, 24), (2.0, 2.0, 3.0), (0.0, 0.0, 0.0), np.eye(3))
    data = np.random.default_rng(1).random(lps.shape).astype(np.float32)
    ras = Grid(lps.shape, lps.spacing, (46.0, 38.0, 0.0), np.diag([-1.0, -1.0, 1.0]))
    flipped = data[:, ::-1, ::-1].copy()
    config = Dinov3SlicesConfig(model="tiny", random_weights=True, patch_spacing_mm=4.0)
    backbone = SliceBackbone(config, load_dinov3(config), "cpu", "dinov3")
    a = backbone.extract(Image(data, lps)).levels[0]
    b = backbone.extract(Image(flipped, ras)).levels[0]
    assert a.grid.same_as(b.grid)
    torch.testing.assert_close(a.data, b.data, atol=1e-5, rtol=1e-5)


def test_only_anchor_slices_are_encoded_and_the_rest_interpolated():
    backbone = patch_mean_backbone(patch_grid=(2, 2), slice_stride_vox=3, mr_percentiles=(0, 100))
    slices = np.arange(8, dtype=np.float32)[:, None, None] * np.ones((8, 32, 32), np.float32)
    slices[:, 0, 0] += 0.5  # no slice is uniform
    level = backbone.extract(Image(slices, Grid.from_shape(slices.shape, 1.0))).levels[0]
    assert slice_plan(8, 3) == [0, 3, 6, 7]
    assert backbone.last_stats["encoded_slices"] == 4
    means = level.data[0].mean((1, 2))
    # token value is linear in the slice index, so interpolation from anchors reproduces it
    torch.testing.assert_close(means, means[0] + (means[7] - means[0]) * torch.arange(8) / 7)
    tokens = torch.randn(3, 2, 1, 1)
    filled = fill_between(tokens, [0, 2, 5], 6)
    torch.testing.assert_close(filled[:, 4, 0, 0], (tokens[1] / 3 + 2 * tokens[2] / 3)[:, 0, 0])


def test_uniform_slices_are_skipped_with_zero_features():
    data = np.random.default_rng(0).random((3, 32, 32)).astype(np.float32)
    data[1] = 0.25
    backbone = patch_mean_backbone(patch_grid=(2, 2), slice_stride_vox=1)
    level = backbone.extract(Image(data, Grid.from_shape(data.shape, 1.0))).levels[0]
    assert backbone.last_stats["encoded_slices"] == 2
    assert torch.count_nonzero(level.data[:, 1]) == 0 and torch.count_nonzero(level.data[:, 0]) > 0


def test_intensity_windows():
    config = Dinov3SlicesConfig(model="tiny", random_weights=True)
    ct = torch.tensor([-1000.0, -150.0, 50.0, 250.0, 1000.0])
    out, modality = normalise_intensity(ct, config)
    assert modality == "ct"
    torch.testing.assert_close(out, torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))
    mr = torch.linspace(0, 1000, 1001)
    out, modality = normalise_intensity(mr, config.model_copy(update={"mr_percentiles": (10, 90)}))
    assert modality == "mr"
    assert out[100] == 0 and out[900] == 1 and abs(float(out[500]) - 0.5) < 1e-5


def test_too_many_tokens_is_a_config_error():
    from medfeat.errors import ConfigError

    backbone = patch_mean_backbone(patch_grid=(200, 200))
    with pytest.raises(ConfigError, match="max_tokens_per_slice"):
        backbone.extract(Image(np.zeros((2, 8, 8), np.float32), Grid.from_shape((2, 8, 8))))


def test_padding_slabs_are_not_anchors():
    """Stride counts from the first non-uniform slice; slices outside the content stay zero."""
    data = np.zeros((10, 32, 32), np.float32)
    data[2:8] = np.random.default_rng(0).random((6, 32, 32))
    backbone = patch_mean_backbone(patch_grid=(2, 2), slice_stride_vox=4)
    level = backbone.extract(Image(data, Grid.from_shape(data.shape, 1.0))).levels[0]
    assert slice_plan(10, 4, 2, 7) == [2, 6, 7]
    assert backbone.last_stats["encoded_slices"] == 3
    assert torch.count_nonzero(level.data[:, [0, 1, 8, 9]]) == 0
    assert torch.count_nonzero(level.data[:, 3]) > 0
