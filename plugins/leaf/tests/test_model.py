"""The LEAF model: single-step inference from t = T, thresholding, and its losses."""

from __future__ import annotations

import pytest
import torch
from medfeat_leaf.build import build_leaf
from medfeat_leaf.model import distillation_loss
from torch.nn import functional as F


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


def test_distillation_loss_is_the_plain_mean_negative_cosine():
    g = torch.Generator().manual_seed(0)
    p, q = torch.randn(3, 7, 5, generator=g), torch.randn(3, 7, 5, generator=g)
    manual = (
        -sum(F.cosine_similarity(p[b, n], q[b, n], dim=0) for b in range(3) for n in range(7)) / 21
    )
    torch.testing.assert_close(distillation_loss(p, q), manual)
    # no division by the batch size twice: repeating a batch does not change the loss
    torch.testing.assert_close(
        distillation_loss(p[:1].repeat(4, 1, 1), q[:1].repeat(4, 1, 1)),
        distillation_loss(p[:1], q[:1]),
    )
    assert distillation_loss(p, p).item() == pytest.approx(-1.0)
    assert distillation_loss(p, -p).item() == pytest.approx(1.0)


@pytest.mark.parametrize("prediction", ["x0", "epsilon"])
def test_sdseg_x0_term_is_the_l1_of_the_x0_estimate(tiny, prediction, monkeypatch):
    cfg = tiny().model_copy(update={"prediction": prediction, "x0_loss_weight": 1.0})
    torch.manual_seed(0)
    model = build_leaf(cfg)
    seen = {}
    real = model.denoise

    def spy(z_x, z_t, t):
        out = real(z_x, z_t, t)
        seen.update(z_t=z_t, t=t, out=out)
        return out

    monkeypatch.setattr(model, "denoise", spy)
    images, masks = torch.rand(2, 3, 32, 32) * 2 - 1, (torch.rand(2, 1, 32, 32) > 0.5).float()
    result = model.loss(images, masks, torch.Generator().manual_seed(1))
    z_y = model.mask_codec.encode(masks)
    x0_hat = model.schedule.to_x0(prediction, seen["out"], seen["z_t"], seen["t"])
    torch.testing.assert_close(result["x0"], F.l1_loss(x0_hat, z_y))
    torch.testing.assert_close(result["total"], result["diffusion"] + result["x0"])
    if prediction == "x0":  # the extra term repeats LEAF's own loss
        torch.testing.assert_close(result["x0"], result["diffusion"])
