"""Schedules, x0/epsilon/v consistency, and the distillation loss."""

from __future__ import annotations

import pytest
import torch
from medfeat_leaf.config import ScheduleConfig
from medfeat_leaf.model import distillation_loss
from medfeat_leaf.schedule import Schedule
from torch.nn import functional as F


def test_linear_and_scaled_linear_schedules():
    lin = Schedule(ScheduleConfig())
    sq = Schedule(ScheduleConfig(beta_schedule="scaled_linear"))
    betas_lin = 1 - lin.alphas_cumprod / torch.cat(
        [torch.ones(1, dtype=torch.float64), lin.alphas_cumprod[:-1]]
    )
    assert betas_lin[0] == pytest.approx(0.0015, rel=1e-5)
    assert betas_lin[-1] == pytest.approx(0.0155, rel=1e-5)
    betas_sq = 1 - sq.alphas_cumprod / torch.cat(
        [torch.ones(1, dtype=torch.float64), sq.alphas_cumprod[:-1]]
    )
    mid = torch.linspace(0.0015**0.5, 0.0155**0.5, 1000) ** 2
    torch.testing.assert_close(betas_sq.float(), mid, rtol=1e-4, atol=1e-7)
    assert lin.num_steps == 1000 and lin.alphas_cumprod[-1] < 1e-3


@pytest.mark.parametrize("prediction", ["x0", "epsilon", "v"])
def test_parameterisations_recover_x0(prediction):
    s = Schedule(ScheduleConfig())
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 4, 3, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(5, 4, 3, 3, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 10, 500, 900, 999])
    z_t = s.add_noise(x0, noise, t)
    target = s.target(prediction, x0, noise, t)
    torch.testing.assert_close(s.to_x0(prediction, target, z_t, t), x0)


def test_v_target_is_the_velocity():
    s = Schedule(ScheduleConfig())
    x0, noise, t = torch.randn(3, 2, 2, 2), torch.randn(3, 2, 2, 2), torch.tensor([3, 300, 999])
    a, b = s.coefficients(t, x0)
    torch.testing.assert_close(s.target("v", x0, noise, t), a * noise - b * x0)
    torch.testing.assert_close(a**2 + b**2, torch.ones_like(a))


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
    from medfeat_leaf.build import build_leaf

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
