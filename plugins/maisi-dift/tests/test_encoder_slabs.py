"""The slab-wise encoder equals MONAI's AutoencoderKlMaisi.encode up to rounding."""

from __future__ import annotations

import pytest
import torch
from medfeat_maisi_dift.encoder_slabs import encode_streaming
from medfeat_maisi_dift.networks import AUTOENCODER_TINY, AUTOENCODER_V1, build_autoencoder


def randomised(spec, splits=1):
    """An autoencoder with weights large enough that every layer matters (default init is mild)."""
    torch.manual_seed(0)
    net = build_autoencoder(spec, num_splits=splits)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.1 if p.dim() > 1 else 0.5)
    return net


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("recompute", [False, True])
@pytest.mark.parametrize("slab_bytes", [2**12, 2**16, 2**30])  # one row per slab ... one slab
def test_tiny_encoder_equals_monai(slab_bytes, recompute):
    net = randomised(AUTOENCODER_TINY)
    x = torch.rand(1, 1, 28, 20, 36)  # odd slab boundaries, every axis different
    keep = x.clone()
    with torch.inference_mode():
        mu, sigma = net.encode(x)
        mu_s, sigma_s = encode_streaming(net, x, slab_bytes=slab_bytes, recompute=recompute)
    assert mu_s.shape == mu.shape == (1, 4, 7, 5, 9)
    assert rel(mu_s, mu) < 1e-5 and rel(sigma_s, sigma) < 1e-5
    torch.testing.assert_close(x, keep, rtol=0, atol=0)  # the caller's input is never overwritten


@pytest.mark.parametrize("recompute", [False, True])
def test_v1_encoder_equals_monai_with_splits(recompute):
    net = randomised(AUTOENCODER_V1, splits=2)
    x = torch.rand(1, 1, 24, 24, 32)
    with torch.inference_mode():
        mu, sigma = net.encode(x)
        mu_s, sigma_s = encode_streaming(net, x, slab_bytes=2**20, recompute=recompute)
    assert rel(mu_s, mu) < 1e-5 and rel(sigma_s, sigma) < 1e-5


def test_backbone_encoders_agree(tiny_config, ct_image):
    from medfeat_maisi_dift.backbone import MaisiDiftBackbone

    a = MaisiDiftBackbone(tiny_config(encoder="streaming", encoder_slab_mib=8), seed=1)
    b = MaisiDiftBackbone(tiny_config(encoder="monai"), seed=1)
    for la, lb in zip(a.extract(ct_image).levels, b.extract(ct_image).levels, strict=True):
        torch.testing.assert_close(la.data, lb.data, rtol=1e-4, atol=1e-5)


def test_backbone_recompute_gives_the_same_features(tiny_config, ct_image):
    from medfeat_maisi_dift.backbone import MaisiDiftBackbone

    a = MaisiDiftBackbone(tiny_config(encoder_slab_mib=8), seed=1)
    b = MaisiDiftBackbone(tiny_config(encoder_slab_mib=8, encoder_recompute=True), seed=1)
    for la, lb in zip(a.extract(ct_image).levels, b.extract(ct_image).levels, strict=True):
        torch.testing.assert_close(la.data, lb.data, rtol=1e-4, atol=1e-5)
