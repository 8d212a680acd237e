"""Single-step inference, thresholding, geometry of predictions, and exact resume."""

from __future__ import annotations

import numpy as np
import torch
from medfeat_leaf.build import build_leaf
from medfeat_leaf.head import LeafHead
from medfeat_leaf.teachers import PatchDescriptor2D
from medfeat_leaf.train import Trainer

from medfeat.context import RunContext
from medfeat.geometry import Grid, Image


def test_single_step_inference_shapes_threshold_and_seed(tiny):
    torch.manual_seed(0)
    model = build_leaf(tiny()).eval()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    prob = model.predict_probability(x, g())
    assert prob.shape == (3, 1, 32, 32) and prob.min() >= 0 and prob.max() <= 1
    torch.testing.assert_close(prob, model.predict_probability(x, g()))  # same seed, same output
    assert torch.equal(model.predict_mask(x, g()), prob > 0.5)
    model.config.threshold = 0.2
    assert torch.equal(model.predict_mask(x, g()), prob > 0.2)


def test_inference_uses_t_max_and_the_x0_estimate(tiny, monkeypatch):
    model = build_leaf(tiny()).eval()
    seen = {}

    def fake_denoise(z_x, z_t, t):
        seen["t"] = t
        return torch.full_like(z_t, 0.6)  # x0 latent -> mask value (0.6 + 1) / 2 = 0.8

    monkeypatch.setattr(model, "denoise", fake_denoise)
    prob = model.predict_probability(torch.zeros(2, 3, 32, 32))
    assert seen["t"].tolist() == [999, 999]
    torch.testing.assert_close(prob, torch.full((2, 1, 32, 32), 0.8))


def _params(model):
    return {k: v.detach().clone() for k, v in model.trainable_modules().state_dict().items()}


def test_interrupted_and_resumed_training_reproduces_the_uninterrupted_run(tiny, blobs, tmp_path):
    train = blobs("train", 5)
    teacher = PatchDescriptor2D(patch_size_px=8)
    torch.manual_seed(0)
    ref = build_leaf(tiny(max_steps=4))
    Trainer(ref, tmp_path / "a", RunContext(seed=3), teacher).fit(train, [])

    torch.manual_seed(0)
    first = build_leaf(tiny(max_steps=2))  # "interrupted" after 2 steps (checkpoint written)
    Trainer(first, tmp_path / "b", RunContext(seed=3), teacher).fit(train, [])
    torch.manual_seed(123)  # different global RNG state and a fresh model before resuming
    resumed = build_leaf(tiny(max_steps=4))
    metrics = Trainer(resumed, tmp_path / "b", RunContext(seed=3), teacher).fit(train, [])
    assert metrics["steps"] == 4
    a, b = _params(ref), _params(resumed)
    assert a.keys() == b.keys() and any(k.startswith("projector.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ema_a = torch.load(tmp_path / "a" / "leaf.pt", weights_only=True)["weights"]
    ema_b = torch.load(tmp_path / "b" / "leaf.pt", weights_only=True)["weights"]
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    # and training did change the weights
    fresh = _params(build_leaf(tiny()))
    assert not torch.equal(fresh["unet.conv_in.weight"], a["unet.conv_in.weight"])


def test_head_predicts_on_the_input_grid_without_the_teacher(tiny, blobs, tmp_path):
    train = blobs("train", 4)
    head = LeafHead(tiny(max_steps=2), RunContext())
    head.fit(train, blobs("validation", 2), tmp_path, RunContext(), backbone=PatchDescriptor2D(8))
    infer = LeafHead(tiny(), RunContext())
    infer.load(tmp_path / "leaf.pt")
    assert infer.model.projector is None  # projector dropped at inference
    grid = Grid((48, 40), (0.7, 0.9), (10.0, -5.0), np.array([[0.0, 1.0], [1.0, 0.0]]))
    image = Image(np.random.default_rng(0).integers(0, 255, (3, 48, 40), dtype=np.uint8), grid)
    pred = infer.predict(image)
    assert pred.grid is grid and pred.numpy().shape == (48, 40)
    assert set(np.unique(pred.numpy())) <= {0, 1}


class _SignalAtStep:
    """A progress reporter that sends this process ``signum`` after training step ``at``."""

    def __init__(self, at: int, signum: int) -> None:
        self.at, self.signum = at, signum

    def log(self, *args, **kwargs) -> None:
        pass

    def track(self, items, *args, **kwargs):
        return items

    def callback(self, description):
        import os

        def update(text, fraction):
            if text.startswith(f"step {self.at} "):
                os.kill(os.getpid(), self.signum)

        return update


def test_a_signal_saves_the_current_step_and_resuming_loses_nothing(tiny, blobs, tmp_path):
    import signal

    import pytest

    from medfeat.errors import Interrupted

    train = blobs("train", 5)
    torch.manual_seed(0)
    ref = build_leaf(tiny(max_steps=5, checkpoint_every_steps=100))
    Trainer(ref, tmp_path / "a", RunContext(seed=3)).fit(train, [])

    torch.manual_seed(0)
    first = build_leaf(tiny(max_steps=5, checkpoint_every_steps=100))  # no periodic save before 5
    ctx = RunContext(seed=3, progress=_SignalAtStep(3, signal.SIGTERM))
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted, match="SIGTERM at step 3"):
        Trainer(first, tmp_path / "b", ctx).fit(train, [])
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored
    assert torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)["step"] == 3
    resumed = build_leaf(tiny(max_steps=5, checkpoint_every_steps=100))
    assert Trainer(resumed, tmp_path / "b", RunContext(seed=3)).fit(train, [])["steps"] == 5
    a, b = _params(ref), _params(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
