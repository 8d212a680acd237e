"""The MAISI v1 architectures equal the official checkpoints' manifests, key by key and shape by shape."""

from __future__ import annotations

import pytest
import torch
from medfeat_maisi_dift.networks import AUTOENCODER_V1, UNET_V1, build_autoencoder, build_unet


@pytest.mark.parametrize(
    "name, build, spec",
    [
        ("maisi_v1_autoencoder", build_autoencoder, AUTOENCODER_V1),
        ("maisi_v1_diffusion_unet", build_unet, UNET_V1),
    ],
)
def test_architecture_equals_manifest(name, build, spec, manifest):
    with torch.device("meta"):
        module = build(spec)
    shapes = {k: list(v.shape) for k, v in module.state_dict().items()}
    assert shapes == manifest(name)  # every key and shape, in order
