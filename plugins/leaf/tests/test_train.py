"""Training: exact resume after an interruption or a signal, and weights that change."""

from __future__ import annotations

import torch
from medfeat_leaf.backbone import PatchDescriptor2D
from medfeat_leaf.build import build_leaf
from medfeat_leaf.train import Trainer

from medfeat.context import RunContext


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

        steps = iter(range(1, 10**9))  # the trainer reports once per finished step

        def update(text, fraction):
            if next(steps) == self.at:
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
