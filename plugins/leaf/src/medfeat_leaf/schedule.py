"""DDPM noise schedule and the x0 / epsilon / v parameterisations of the U-Net output."""

from __future__ import annotations

import torch

from medfeat_leaf.config import ScheduleConfig


class Schedule:
    """Cumulative alphas of a DDPM schedule (built by diffusers' :class:`DDPMScheduler`)."""

    def __init__(self, config: ScheduleConfig) -> None:
        from diffusers import DDPMScheduler

        scheduler = DDPMScheduler(
            num_train_timesteps=config.num_train_timesteps,
            beta_start=config.beta_start,
            beta_end=config.beta_end,
            beta_schedule=config.beta_schedule,
        )
        self.num_steps = config.num_train_timesteps
        self.alphas_cumprod = scheduler.alphas_cumprod.to(torch.float64)

    def coefficients(
        self, t: torch.Tensor, like: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """sqrt(abar_t) and sqrt(1 - abar_t), broadcastable to ``like``."""
        abar = self.alphas_cumprod.to(t.device)[t]
        shape = (-1,) + (1,) * (like.ndim - 1)
        a = abar.sqrt().to(like.dtype).view(shape)
        s = (1 - abar).sqrt().to(like.dtype).view(shape)
        return a, s

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = self.coefficients(t, x0)
        return a * x0 + s * noise

    def target(
        self, prediction: str, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """What the network regresses for ``prediction`` in {x0, epsilon, v}."""
        if prediction == "x0":
            return x0
        if prediction == "epsilon":
            return noise
        a, s = self.coefficients(t, x0)
        return a * noise - s * x0

    def to_x0(
        self, prediction: str, output: torch.Tensor, z_t: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """The x0 estimate implied by a network output."""
        if prediction == "x0":
            return output
        a, s = self.coefficients(t, z_t)
        if prediction == "epsilon":
            return (z_t - s * output) / a
        return a * z_t - s * output
