"""MedDIFT feature extraction on the MAISI v1 networks: encode, noise at timestep t, capture up-blocks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch

#: DDPM training schedule of MAISI v1: 1000 steps, betas linear in sqrt space.
NUM_TRAIN_TIMESTEPS = 1000
BETA_START, BETA_END = 0.0015, 0.0195
#: One-hot order of the body-region inputs.
BODY_REGIONS = ("head-neck", "thorax", "abdomen", "pelvis-lower-body")


def alphas_cumprod(
    num_steps: int = NUM_TRAIN_TIMESTEPS, beta_start: float = BETA_START, beta_end: float = BETA_END
) -> torch.Tensor:
    """``alpha_bar_t`` of the "scaled linear" schedule, float64 ``[num_steps]``."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def region_tensor(region: str, batch: int = 1) -> torch.Tensor:
    """One-hot body region times 100, ``[batch, 4]``."""
    t = torch.zeros(batch, len(BODY_REGIONS))
    t[:, BODY_REGIONS.index(region)] = 100.0
    return t


@contextmanager
def capture_up_blocks(unet: torch.nn.Module, levels: Sequence[int]):
    """Forward hooks storing the outputs of ``unet.up_blocks[l]`` for ``l`` in ``levels``."""
    store: dict[int, torch.Tensor] = {}
    handles = [
        unet.up_blocks[lvl].register_forward_hook(
            lambda _m, _i, out, lvl=lvl: store.__setitem__(lvl, out)
        )
        for lvl in levels
    ]
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def encode_latent(
    autoencoder: torch.nn.Module,
    x: torch.Tensor,
    *,
    scale_factor: float,
    posterior: str = "sample",
    generator: torch.Generator | None = None,
    encode: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> torch.Tensor:
    """``z0 = scale_factor * (mu + sigma * eps)`` (reference) or ``scale_factor * mu`` (``posterior='mean'``).

    ``encode`` replaces ``autoencoder.encode`` (e.g. the slab-wise encoder); ``eps`` is drawn on
    the CPU from ``generator`` (the reference's global CPU stream) and moved to the device.
    """
    mu, sigma = (encode or autoencoder.encode)(x)
    if posterior == "mean":
        return mu * scale_factor
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
    return (mu + sigma * eps) * scale_factor


def up_block_features(
    unet: torch.nn.Module,
    z0: torch.Tensor,
    *,
    timestep: int,
    levels: Sequence[int],
    top_region: torch.Tensor,
    bottom_region: torch.Tensor,
    spacing: torch.Tensor,
    num_draws: int = 1,
    generator: torch.Generator | None = None,
) -> dict[int, torch.Tensor]:
    """Up-block outputs ``{level: [C, x, y, z]}`` for ``z_t = sqrt(a_t) z0 + sqrt(1-a_t) eps``.

    With ``num_draws`` > 1 the features of independent noise draws are averaged (as in DIFT).
    """
    a = float(alphas_cumprod()[timestep])
    t = torch.full((z0.shape[0],), timestep, dtype=torch.long, device=z0.device)
    dev = z0.device
    out: dict[int, torch.Tensor] = {}
    for _ in range(num_draws):
        eps = torch.randn(z0.shape, generator=generator, dtype=z0.dtype).to(dev)
        zt = a**0.5 * z0 + (1.0 - a) ** 0.5 * eps
        with capture_up_blocks(unet, levels) as store:
            unet(
                zt,
                t,
                top_region_index_tensor=top_region.to(dev),
                bottom_region_index_tensor=bottom_region.to(dev),
                spacing_tensor=spacing.to(dev),
            )
        for lvl in levels:
            f = store[lvl][0].float()
            out[lvl] = f if lvl not in out else out[lvl].add_(f)
        del store
    if num_draws > 1:
        for lvl in out:
            out[lvl].div_(num_draws)
    return out
