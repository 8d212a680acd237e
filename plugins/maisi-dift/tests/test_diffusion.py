"""DDPM noising and up-block feature capture of the MAISI U-Net (diffusion.py)."""

from __future__ import annotations

import torch
from medfeat_maisi_dift.diffusion import alphas_cumprod


def test_schedule_matches_reference_values_and_monai():
    from monai.networks.schedulers import DDPMScheduler

    ac = alphas_cumprod()
    assert [round(float(ac[t]), 4) for t in (10, 20, 30, 60)] == [0.9832, 0.9673, 0.9510, 0.8988]
    ref = DDPMScheduler(1000, "scaled_linear_beta", beta_start=0.0015, beta_end=0.0195)
    assert torch.allclose(ac.float(), ref.alphas_cumprod, atol=1e-6)


def test_noise_ensemble_averages_draws(tiny_backbone):
    from medfeat_maisi_dift.diffusion import region_tensor, up_block_features

    z0 = torch.randn(1, 4, 8, 8, 8)
    kw = dict(
        timestep=50,
        levels=[2],
        top_region=region_tensor("thorax"),
        bottom_region=region_tensor("abdomen"),
        spacing=torch.tensor([[100.0, 100.0, 100.0]]),
    )
    with torch.no_grad():
        gen = torch.Generator().manual_seed(5)
        singles = [
            up_block_features(tiny_backbone.unet, z0, generator=gen, **kw)[2] for _ in range(3)
        ]
        avg = up_block_features(
            tiny_backbone.unet, z0, num_draws=3, generator=torch.Generator().manual_seed(5), **kw
        )[2]
    torch.testing.assert_close(avg, sum(singles) / 3)
