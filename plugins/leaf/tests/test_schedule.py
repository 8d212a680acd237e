"""The DDPM schedules and the x0 / epsilon / v parameterisations."""

from __future__ import annotations

import pytest
import torch
from medfeat_leaf.config import ScheduleConfig
from medfeat_leaf.schedule import Schedule


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
