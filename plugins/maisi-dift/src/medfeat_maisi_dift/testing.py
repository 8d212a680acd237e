"""Helpers for tests and benchmarks without weights: random checkpoints in the official layouts."""

from __future__ import annotations

from pathlib import Path

import torch


def random_state_dict(
    shapes: dict[str, list[int]], seed: int = 0, cheap: bool = False
) -> dict[str, torch.Tensor]:
    """Random float tensors with the given keys and shapes (e.g. from a checkpoint manifest).

    ``cheap`` fills each tensor with one random value (distinct per key), for very large models.
    """
    gen = torch.Generator().manual_seed(seed)
    if cheap:
        return {k: torch.full(s, float(torch.rand(1, generator=gen))) for k, s in shapes.items()}
    return {k: torch.randn(s, generator=gen) * 0.02 for k, s in shapes.items()}


def unet_file_content(state_dict: dict, scale_factor: float = 1.0) -> dict:
    """The layout of the official ``diff_unet_3d_ddpm.pt``."""
    return {
        "epoch": 0,
        "loss": 0.0,
        "num_train_timesteps": 1000,
        "scale_factor": torch.tensor(scale_factor),
        "unet_state_dict": state_dict,
    }


def save_official_files(
    autoencoder_sd: dict, unet_sd: dict, folder: Path, scale_factor: float = 1.0
) -> tuple[Path, Path]:
    """Write ``autoencoder_epoch273.pt`` and ``diff_unet_3d_ddpm.pt`` under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ae, unet = folder / "autoencoder_epoch273.pt", folder / "diff_unet_3d_ddpm.pt"
    torch.save(autoencoder_sd, ae)
    torch.save(unet_file_content(unet_sd, scale_factor), unet)
    return ae, unet
