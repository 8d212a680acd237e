"""Cost of slice encoding: batched forward passes, no autograd, and the on-disk token cache
(same tokens, no forward pass on a hit, a miss whenever anything that changes the tokens does)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from medfeat_dinov3.backbone import SliceBackbone
from medfeat_dinov3.checkpoints import load_dinov3
from medfeat_dinov3.config import Dinov3SlicesConfig

from medfeat.geometry import Grid, Image


def _image(seed: int = 0, shape=(9, 32, 48)) -> Image:
    data = np.random.default_rng(seed).random(shape).astype(np.float32) * 800 - 400
    return Image(data, Grid(shape, (1.5, 2.0, 2.5), (1.0, -2.0, 3.0), np.eye(3)), {"name": "v"})


def _backbone(seed: int = 0, **options) -> tuple[SliceBackbone, list[int]]:
    """A tiny random DINOv3 slice backbone and the list its forward passes append batch sizes to."""
    config = Dinov3SlicesConfig(
        model="tiny", random_weights=True, random_seed=seed, patch_grid=(2, 3), **options
    )
    backbone = SliceBackbone(config, load_dinov3(config), "cpu", "dinov3")
    calls: list[int] = []

    def count(module, args, kwargs, output):
        calls.append(kwargs["pixel_values"].shape[0])
        assert not torch.is_grad_enabled()  # no autograd graph is ever built
        assert not any(p.requires_grad for p in module.parameters())

    backbone.model.module.register_forward_hook(count, with_kwargs=True)
    return backbone, calls


def test_slices_are_encoded_in_batches_with_the_same_tokens():
    image = _image()
    one, calls_one = _backbone(slice_stride_vox=1, batch_slices=1)
    many, calls_many = _backbone(slice_stride_vox=1, batch_slices=4)
    a, b = one.extract(image).levels[0].data, many.extract(image).levels[0].data
    assert calls_one == [1] * 9 and calls_many == [4, 4, 1]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_a_cache_hit_gives_the_same_tokens_without_any_forward_pass(tmp_path):
    image = _image()
    plain, _ = _backbone(slice_stride_vox=2)
    expected = plain.extract(image).levels[0]
    first, calls = _backbone(slice_stride_vox=2, feature_cache_dir=tmp_path)
    level = first.extract(image).levels[0]
    assert calls and first.last_stats["feature_cache"] == "miss"
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"  # no temporary file left behind
    second, calls = _backbone(slice_stride_vox=2, feature_cache_dir=tmp_path)
    cached = second.extract(image).levels[0]
    assert calls == [] and second.last_stats["feature_cache"] == "hit"
    assert cached.grid.same_as(expected.grid) and level.grid.same_as(expected.grid)
    torch.testing.assert_close(cached.data, expected.data, atol=0, rtol=0)
    torch.testing.assert_close(level.data, expected.data, atol=0, rtol=0)
    # the batch size changes nothing in the tokens: still a hit
    third, calls = _backbone(slice_stride_vox=2, batch_slices=1, feature_cache_dir=tmp_path)
    third.extract(image)
    assert calls == []


@pytest.mark.parametrize(
    "change",
    ["voxels", "geometry", "weights", "window", "stride"],
)
def test_anything_that_changes_the_tokens_is_a_miss(tmp_path, change):
    image = _image()
    base = {"slice_stride_vox": 2, "feature_cache_dir": tmp_path, "modality": "ct"}
    _backbone(**base)[0].extract(image)
    seed = 0
    if change == "voxels":
        data = image.numpy().copy()
        data[4, 10, 10] += 1.0
        image = image.with_data(data)
    elif change == "geometry":
        g = image.grid
        image = Image(image.numpy(), Grid(g.shape, g.spacing, (0.0, 0.0, 0.0), g.direction))
    elif change == "weights":
        seed = 1
    elif change == "window":
        base["ct_window_width_hu"] = 300.0
    else:
        base["slice_stride_vox"] = 3
    backbone, calls = _backbone(seed, **base)
    backbone.extract(image)
    assert calls and backbone.last_stats["feature_cache"] == "miss"
    assert len(list(tmp_path.iterdir())) == 2


def test_a_damaged_cache_file_is_recomputed_and_rewritten(tmp_path):
    image = _image()
    first, _ = _backbone(feature_cache_dir=tmp_path)
    expected = first.extract(image).levels[0].data
    (path,) = tmp_path.iterdir()
    path.write_bytes(b"not a torch file")
    again, calls = _backbone(feature_cache_dir=tmp_path)
    torch.testing.assert_close(again.extract(image).levels[0].data, expected, atol=0, rtol=0)
    assert calls and again.last_stats["feature_cache"] == "miss"
    third, calls = _backbone(feature_cache_dir=tmp_path)
    third.extract(image)
    assert calls == []  # rewritten by the second run
