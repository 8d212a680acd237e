"""Cost of pretraining and feature extraction: one U-Net per pretraining run, no noise head or
unused decoder levels in feature extraction, no autograd, box coordinates without per-voxel
tables - each with the same values as before."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from medfeat_bpr_diffusion import pretrain
from medfeat_bpr_diffusion.checkpoints import read_ddpm_checkpoint
from medfeat_bpr_diffusion.config import BBoxCoordinatesConfig, PretrainConfig, UNetConfig
from medfeat_bpr_diffusion.coordinates import BBoxCoordinates, normalised_world
from medfeat_bpr_diffusion.networks import DiffusionUNet3d
from medfeat_bpr_diffusion.preprocess import body_bbox_world

from medfeat.geometry import Grid


def test_pretraining_builds_one_unet(make_ct, tiny_unet, context, tmp_path, monkeypatch):
    built = []

    class Counting(DiffusionUNet3d):
        def __init__(self, *args, **kwargs):
            built.append(args[1])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(pretrain, "DiffusionUNet3d", Counting)

    class Volumes:
        def images(self):
            yield make_ct(seed=0)[0]

    config = PretrainConfig.model_validate(
        {
            "preprocess": {"spacing_mm": [5.0, 5.0, 5.0]},
            "unet": tiny_unet,
            "patch_size_vox": [8, 16, 16],
            "max_steps": 2,
            "log_every_steps": 100,
        }
    )
    result = pretrain.DDPMPretrainer(config, context).fit(Volumes(), tmp_path, context)
    assert result["steps"] == 2 and built == [3]  # the trained U-Net only (3 coordinate channels)


def test_patch_sizes_are_still_checked_against_the_unet_depth(tiny_unet, context, tmp_path):
    from medfeat.errors import DataError

    config = PretrainConfig.model_validate(
        {"unet": tiny_unet, "patch_size_vox": [8, 15, 16], "max_steps": 1}
    )
    with pytest.raises(DataError, match="divisible by 2"):
        pretrain.DDPMPretrainer(config, context).fit(None, tmp_path, context)


@pytest.mark.parametrize("levels", [[0, 1, 2], [2, 0], [1], [2]])
def test_decoder_features_equal_the_full_forward_without_the_unused_parts(levels):
    torch.manual_seed(0)
    config = UNetConfig(base_channels=4, channel_mults=(1, 2, 2), num_res_blocks=1, groups=2)
    model = DiffusionUNet3d(config, 3, (8, 16, 16)).eval()
    x, c = torch.randn(1, 1, 8, 16, 16), torch.rand(1, 3, 8, 16, 16)
    t = torch.tensor([30])
    with torch.no_grad():
        _, full = model(x, c, t, return_features=True)
    ran = []
    model.out.register_forward_hook(lambda *a: ran.append("out"))
    for level, (_, up) in zip(reversed(range(3)), model.up, strict=True):
        up.register_forward_hook(lambda *a, level=level: ran.append(f"up{level}"))
    with torch.inference_mode():
        got = model.features(x, c, t, levels)
    for lv, g in zip(levels, got, strict=True):
        assert torch.equal(g, full[lv])
    # the noise head never runs; upsampling stops at the finest level asked for
    assert ran == [f"up{lv}" for lv in (2, 1) if lv > min(levels)]


def test_backbone_features_are_ordinary_tensors_computed_without_autograd(
    ct_pair, tiny_unet, context
):
    from medfeat_bpr_diffusion.backbone import BPRDiffusionBackbone
    from medfeat_bpr_diffusion.config import BackboneConfig

    cfg = BackboneConfig.model_validate(
        {
            "random_init": True,
            "unet": tiny_unet,
            "patch_size_vox": [8, 16, 16],
            "preprocess": {"spacing_mm": [5.0, 5.0, 5.0]},
            "timesteps": [10],
            "feature_levels": [1],
        }
    )
    backbone = BPRDiffusionBackbone(cfg, context)
    backbone.extract(ct_pair[0])  # builds the network
    seen = []
    backbone.model.register_forward_hook(lambda *a: seen.append(torch.is_inference_mode_enabled()))
    backbone.model.features = lambda *a, f=backbone.model.features: (
        seen.append(torch.is_inference_mode_enabled()) or f(*a)
    )
    level = backbone.extract(ct_pair[0]).levels[0]
    assert seen and all(seen)
    assert not torch.is_inference(level.data) and not level.data.requires_grad
    level.data.mul_(1.0)  # consumers may work on it in place (heads train on these features)


def _old_bbox(grid: Grid, lo, hi) -> np.ndarray:
    """The previous implementation: per-voxel index and world tables."""
    axes = [np.arange(n, dtype=np.float64) for n in grid.shape]
    idx = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    world = grid.array_index_to_world(idx)
    norm = (world - lo) / np.maximum(hi - lo, 1e-6)
    return norm.T.reshape(3, *grid.shape).astype(np.float32)


def test_box_coordinates_are_unchanged_and_need_far_less_memory(ct_pair):
    image = ct_pair[0]
    direction = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    grid = Grid((30, 40, 50), (1.5, 0.7, 2.5), (-3.0, 4.0, 10.0), direction)
    lo, hi = np.array([-10.0, 0.0, -80.0]), np.array([60.0, 50.0, 30.0])
    tracemalloc.start()
    new = normalised_world(grid, lo, hi)
    peak_new = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    tracemalloc.start()
    old = _old_bbox(grid, lo, hi)
    peak_old = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_allclose(new, old, atol=1e-6, rtol=0)
    assert new.dtype == np.float32
    assert peak_new < 0.35 * peak_old and peak_new < 2.2 * new.nbytes
    # and the provider gives exactly these values
    fmap = BBoxCoordinates(BBoxCoordinatesConfig()).coordinates(image)
    lo, hi = body_bbox_world(image, BBoxCoordinatesConfig().body_threshold_hu)
    np.testing.assert_array_equal(fmap.levels[0].data.numpy(), normalised_world(image.grid, lo, hi))
    np.testing.assert_allclose(
        fmap.levels[0].data.numpy(), _old_bbox(image.grid, lo, hi), atol=1e-6, rtol=0
    )


def test_activation_checkpointing_gives_the_same_gradients_and_keeps_fewer_tensors():
    config = UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=2, groups=4)
    x, c = torch.randn(1, 1, 8, 16, 16), torch.rand(1, 3, 8, 16, 16)
    grads, kept = {}, {}
    for on in (False, True):
        torch.manual_seed(0)
        model = DiffusionUNet3d(config, 3, (8, 16, 16))
        model.activation_checkpointing = on
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(
            lambda t, saved=saved: saved.append(t.numel()) or t, lambda t: t
        ):
            eps = model(x, c, torch.tensor([7]))
        eps.square().mean().backward()
        grads[on] = {k: p.grad.clone() for k, p in model.named_parameters()}
        kept[on] = sum(saved)
    for k in grads[False]:
        torch.testing.assert_close(grads[True][k], grads[False][k], atol=1e-6, rtol=1e-5)
    assert kept[True] < 0.25 * kept[False]  # outside the checkpointed blocks only


def test_pretraining_with_activation_checkpointing_matches(make_ct, tiny_unet, context, tmp_path):
    class Volumes:
        def images(self):
            yield make_ct(seed=0)[0]

    states = []
    for on in (False, True):
        config = PretrainConfig.model_validate(
            {
                "preprocess": {"spacing_mm": [5.0, 5.0, 5.0]},
                "unet": tiny_unet,
                "patch_size_vox": [8, 16, 16],
                "max_steps": 2,
                "activation_checkpointing": on,
            }
        )
        pretrain.DDPMPretrainer(config, context).fit(Volumes(), tmp_path / str(on), context)
        states.append(read_ddpm_checkpoint(tmp_path / str(on) / "checkpoints" / "last.pt"))
    for k, v in states[0]["model"].items():
        torch.testing.assert_close(states[1]["model"][k], v, atol=1e-6, rtol=1e-5)
