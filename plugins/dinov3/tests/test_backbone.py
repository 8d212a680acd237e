"""The backbones: slice features with geometry (token centres, shifts, orientation, anchors), the 2D
backbone, the feature cache and the random-weights record of their factories."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from medfeat_dinov3.backbone import SliceBackbone
from medfeat_dinov3.checkpoints import load_dinov3
from medfeat_dinov3.config import Dinov3SlicesConfig
from medfeat_dinov3.networks import SliceModel
from medfeat_dinov3.slicing import fill_between, slice_plan

from medfeat.cli.main import main
from medfeat.context import RunContext
from medfeat.errors import CheckpointError, ConfigError, DataError
from medfeat.geometry import Grid, Image
from medfeat.images2d import IMAGENET_MEAN, IMAGENET_STD
from medfeat.plugins import get_registry

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def case_metrics(out: Path) -> dict:
    cases = json.loads((out / "metrics.json").read_text())["cases"]
    assert len(cases) == 1
    return next(iter(cases.values()))


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


# ------------------------------------------------------------------ dinov3-2d
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


# ------------------------------------------------------------------ in pipelines
def test_features_of_a_volume_are_computed_once_per_run(tmp_path, monkeypatch):
    """Two pairs sharing the fixed image: the backbone runs three times, not four."""
    from medfeat_dinov3.backbone import SliceBackbone

    from medfeat.io.images import write_image
    from medfeat.phantoms import breathing_phantom

    pair = breathing_phantom((12, 20, 20), 4.0, 4.0)
    paths = {}
    for name, image in (("fixed", pair.fixed), ("moving", pair.moving)):
        paths[name] = tmp_path / f"{name}.nii.gz"
        write_image(image, paths[name])
    moving2 = tmp_path / "moving2.nii.gz"
    write_image(pair.moving.with_data(pair.moving.numpy() * 0.9), moving2)
    (tmp_path / "pairs.csv").write_text(
        f"case_id,fixed,moving\na,fixed.nii.gz,moving.nii.gz\nb,fixed.nii.gz,{moving2.name}\n"
    )
    calls = []
    original = SliceBackbone.extract
    monkeypatch.setattr(
        SliceBackbone,
        "extract",
        lambda self, image: calls.append(image.name) or original(self, image),
    )
    out = tmp_path / "out"
    code = main(
        ["run", str(EXAMPLES / "phantom-tiny-vit.yaml"), "--out", str(out),
         "data={name: csv-pairs, csv: " + str(tmp_path / "pairs.csv") + "}",
         "optimiser.adam_iterations=2"]
    )  # fmt: skip
    assert code == 0
    assert len(calls) == 3
    assert sum("fixed.nii.gz" in c for c in calls) == 1


def test_dinov3_features_feed_the_cosine_matcher(tmp_path):
    """Mixing: DINOv3 slice features in a correspondence pipeline with the feature matcher."""
    pipeline = tmp_path / "match.yaml"
    pipeline.write_text(
        "kind: correspondence\nrequires: [medfeat-dinov3]\n"
        "data: {name: breathing-phantom, shape: [16, 24, 24], spacing_mm: 4.0}\n"
        "backbone: {name: dinov3-slices, model: tiny, random_weights: true, patch_spacing_mm: 8.0}\n"
        "matcher: {name: feature-matcher, box_half_size_mm: 12.0}\n"
    )
    out = tmp_path / "out"
    assert main(["run", str(pipeline), "--out", str(out)]) == 0
    m = case_metrics(out)
    assert m["tre_mm_after"]["n"] == m["tre_mm_before"]["n"] > 0
    # each match lies in the 12 mm box around its query
    assert m["tre_mm_after"]["max"] <= m["tre_mm_before"]["max"] + 12 * 3**0.5


# ------------------------------------------------------------------ random weights
@pytest.mark.parametrize("name", ["dinov3-slices", "dinov2-slices", "dinov3-2d"])
def test_factories_record_random_weights(name):
    context = RunContext()
    options = {"model": "tiny", "random_weights": True, "random_seed": 5}
    get_registry().get("backbone", name).build(options, context)
    assert context.random_weights == [f"{name} tiny ViT (seed 5)"]


def test_a_checkpoint_with_random_weights_is_refused(tmp_path):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not both"):
        Dinov3SlicesConfig(model="tiny", checkpoint=tmp_path, random_weights=True)


# ------------------------------------------------------------------ resizing as the reference
def _antialiased_bilinear_1d(signal: torch.Tensor, out: int) -> torch.Tensor:
    """Antialiased bilinear resampling from its definition (the reference transform's resize):
    a triangle filter whose half-width is the reduction factor (1 when enlarging), centred on
    each output pixel centre in input coordinates, weights renormalised at the borders."""
    n = signal.shape[0]
    scale = n / out
    support = max(scale, 1.0)
    values = []
    for j in range(out):
        centre = (j + 0.5) * scale
        weights = torch.tensor(
            [max(0.0, 1 - abs(i + 0.5 - centre) / support) for i in range(n)], dtype=torch.float64
        )
        values.append(float((weights * signal.double()).sum() / weights.sum()))
    return torch.tensor(values)


@pytest.mark.parametrize(("size_in", "size_out"), [(8, 4), (12, 5), (7, 7), (5, 9)])
def test_resizing_is_antialiased_bilinear(size_in, size_out):
    from medfeat_dinov3.backbone import resize_like_reference

    signal = torch.rand(size_in, generator=torch.Generator().manual_seed(size_in)) ** 3
    image = signal.view(1, 1, 1, -1).expand(1, 3, 2, -1)
    out = resize_like_reference(image, (2, size_out))
    expected = _antialiased_bilinear_1d(signal, size_out).float()
    torch.testing.assert_close(out[0, 1, 1], expected, atol=1e-5, rtol=1e-5)
    if size_out == size_in // 2:  # halving: weights 1, 3, 3, 1 (/ 8) inside the image
        inner = (signal[1:-3:2] + 3 * signal[2:-2:2] + 3 * signal[3:-1:2] + signal[4::2]) / 8
        torch.testing.assert_close(out[0, 0, 0, 1:-1], inner, atol=1e-5, rtol=1e-5)


def test_slices_and_2d_images_are_resized_like_the_reference():
    from medfeat_dinov3.backbone import resize_like_reference

    from medfeat.images2d import imagenet_normalise

    backbone = patch_mean_backbone()
    slices = torch.rand(2, 37, 53, generator=torch.Generator().manual_seed(0))
    got = backbone.encode_slices(slices, (2, 3))
    resized = resize_like_reference(slices[:, None], (32, 48))
    torch.testing.assert_close(got, torch.nn.functional.avg_pool2d(resized, 16), atol=1e-5, rtol=0)

    image = _build(image_size_px=32)
    rgb = torch.rand(1, 3, 75, 41, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hidden = image.model.module(
            pixel_values=imagenet_normalise(resize_like_reference(rgb, (32, 32)))
        ).last_hidden_state
    expected = hidden[:, 5:].transpose(1, 2).reshape(1, -1, 2, 2)
    torch.testing.assert_close(image.tokens(rgb), expected, atol=1e-6, rtol=1e-6)
