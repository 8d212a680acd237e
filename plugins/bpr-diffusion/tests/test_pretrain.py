"""bpr-ddpm pretraining: deterministic patch stream, atomic checkpoints, exact resume."""

from __future__ import annotations

import pytest
import torch
from medfeat_bpr_diffusion import pretrain
from medfeat_bpr_diffusion.checkpoints import read_ddpm_checkpoint
from medfeat_bpr_diffusion.config import PretrainConfig

from medfeat.errors import CheckpointError


class Volumes:
    """An in-memory dataset; counts how often each volume is read."""

    def __init__(self, images):
        self.list, self.reads = images, 0

    def images(self):
        for image in self.list:
            self.reads += 1
            yield image


def tiny_config(tiny_unet, **kw) -> PretrainConfig:
    base = {
        "preprocess": {"spacing_mm": [5.0, 5.0, 5.0]},
        "unet": tiny_unet,
        "patch_size_vox": [8, 16, 16],
        "max_steps": 6,
        "checkpoint_every_steps": 2,
        "patches_per_volume": 2,
        "log_every_steps": 100,
        "lr": 1e-3,
    }
    return PretrainConfig.model_validate({**base, **kw})


@pytest.fixture
def volumes(make_ct):
    return Volumes([make_ct(seed=0)[0], make_ct(shape=(16, 36, 40), seed=1, flip=False)[0]])


def _state(path):
    return read_ddpm_checkpoint(path)


def _assert_same(a, b):
    assert a["step"] == b["step"]
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), f"{key}.{k} differs"
    assert a["ema_n_averaged"] == b["ema_n_averaged"]
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    for k in sa:
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(sa[k][name], sb[k][name])


def test_batches_are_a_pure_function_of_seed_and_step(volumes, tiny_unet, context):
    from medfeat_bpr_diffusion.coordinates import build_provider

    c = tiny_config(tiny_unet)
    provider = build_provider(c.coordinates, context)

    def stream():
        return pretrain.VolumeStream(
            volumes, lambda im: pretrain.prepare_volume(im, c, provider, 2), 1
        )

    s1, s2 = stream(), stream()
    a = [pretrain.sample_batch(s1, c, 0, step, 0, 1) for step in (0, 1, 5, 2)]
    b = [pretrain.sample_batch(s2, c, 0, step, 0, 1) for step in (0, 1, 5, 2)]
    for x, y in zip(a, b, strict=True):
        assert all(torch.equal(u, v) for u, v in zip(x, y, strict=True))
    x, coords, t, noise = a[0]
    assert x.shape == (1, 1, 8, 16, 16) and coords.shape == (1, 3, 8, 16, 16)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert s1.count == 2 and len(s1.cache) == 1  # only one volume kept in memory


def test_interrupted_and_resumed_run_equals_uninterrupted_run(
    volumes, tiny_unet, context, tmp_path, monkeypatch
):
    c = tiny_config(tiny_unet)
    full = pretrain.DDPMPretrainer(c, context).fit(volumes, tmp_path / "a", context)
    assert full["steps"] == 6 and full["stopped_by"] == "max_steps"

    real = pretrain.sample_batch

    def crash_at_step_3(stream, config, seed, step, rank, world):
        if step == 3:
            raise KeyboardInterrupt  # e.g. the job was killed
        return real(stream, config, seed, step, rank, world)

    monkeypatch.setattr(pretrain, "sample_batch", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        pretrain.DDPMPretrainer(c, context).fit(volumes, tmp_path / "b", context)
    assert (
        _state(tmp_path / "b" / "checkpoints" / "last.pt")["step"] == 2
    )  # last complete checkpoint
    assert not [p for p in (tmp_path / "b" / "checkpoints").iterdir() if p.name != "last.pt"]
    monkeypatch.setattr(pretrain, "sample_batch", real)
    resumed = pretrain.DDPMPretrainer(c, context).fit(volumes, tmp_path / "b", context)
    assert resumed["steps"] == 6 and resumed["steps_this_run"] == 4
    _assert_same(
        _state(tmp_path / "a" / "checkpoints" / "last.pt"),
        _state(tmp_path / "b" / "checkpoints" / "last.pt"),
    )


def test_a_signal_saves_the_current_step_and_resuming_loses_nothing(
    volumes, tiny_unet, context, tmp_path, monkeypatch
):
    import os
    import signal

    from medfeat.errors import Interrupted

    c = tiny_config(tiny_unet, checkpoint_every_steps=100)  # no periodic save before the end
    full = pretrain.DDPMPretrainer(c, context).fit(volumes, tmp_path / "a", context)
    real = pretrain.sample_batch

    def sigterm_after_step_3(stream, config, seed, step, rank, world):
        if step == 3:  # step 3 is drawn, trained, then the signal is seen before step 4
            os.kill(os.getpid(), signal.SIGTERM)
        return real(stream, config, seed, step, rank, world)

    monkeypatch.setattr(pretrain, "sample_batch", sigterm_after_step_3)
    with pytest.raises(Interrupted, match="SIGTERM at step 4"):
        pretrain.DDPMPretrainer(c, context).fit(volumes, tmp_path / "b", context)
    assert _state(tmp_path / "b" / "checkpoints" / "last.pt")["step"] == 4
    monkeypatch.setattr(pretrain, "sample_batch", real)
    resumed = pretrain.DDPMPretrainer(c, context).fit(volumes, tmp_path / "b", context)
    assert resumed["steps_this_run"] == 2 and full["steps"] == resumed["steps"] == 6
    _assert_same(
        _state(tmp_path / "a" / "checkpoints" / "last.pt"),
        _state(tmp_path / "b" / "checkpoints" / "last.pt"),
    )


def test_training_reduces_the_denoising_loss(volumes, tiny_unet, context, tmp_path):
    c = tiny_config(
        tiny_unet, max_steps=60, checkpoint_every_steps=100, lr=3e-3, patch_size_vox=[8, 8, 8]
    )
    out = pretrain.DDPMPretrainer(c, context).fit(volumes, tmp_path, context)
    assert out["loss_last_50"] < out["loss_first_50"]


def test_checkpoint_errors_say_what_was_expected(tmp_path, tiny_unet):
    from medfeat_bpr_diffusion.backbone import BPRDiffusionBackbone
    from medfeat_bpr_diffusion.config import BackboneConfig

    from medfeat.context import RunContext

    ctx = RunContext()
    with pytest.raises(CheckpointError, match="does not exist"):
        BPRDiffusionBackbone(BackboneConfig(checkpoint=tmp_path / "nope.pt"), ctx)
    (tmp_path / "trunc.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="truncated"):
        BPRDiffusionBackbone(BackboneConfig(checkpoint=tmp_path / "trunc.pt"), ctx)
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="kind 'something-else'"):
        BPRDiffusionBackbone(BackboneConfig(checkpoint=tmp_path / "other.pt"), ctx)
    with pytest.raises(CheckpointError, match="random_init"):
        BPRDiffusionBackbone(BackboneConfig(), ctx)


def test_mismatched_weights_are_refused_strictly(volumes, tiny_unet, context, tmp_path):
    from medfeat_bpr_diffusion.backbone import BPRDiffusionBackbone
    from medfeat_bpr_diffusion.config import BackboneConfig

    c = tiny_config(tiny_unet, max_steps=1)
    pretrain.DDPMPretrainer(c, context).fit(volumes, tmp_path, context)
    path = tmp_path / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    state["ema"].pop(next(iter(state["ema"])))
    state["ema"]["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="1 missing.*1 unexpected"):
        BPRDiffusionBackbone(BackboneConfig(checkpoint=tmp_path / "bad.pt"), context)
    backbone = BPRDiffusionBackbone(BackboneConfig(checkpoint=path, feature_levels=[0, 1]), context)
    assert backbone.model.coord_channels == 3
    assert context.random_weights == []  # pretrained weights (and training) are not random weights
