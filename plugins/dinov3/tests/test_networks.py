"""The ViT builders: the architecture of each size, random weights reproducible by their seed."""

from __future__ import annotations

import pytest
import torch
from medfeat_dinov3.networks import DINOV2_REG, DINOV3, build_dinov2, build_dinov3


@pytest.mark.parametrize(
    "build, spec", [(build_dinov3, DINOV3["tiny"]), (build_dinov2, DINOV2_REG["tiny"])]
)
def test_random_weights_follow_the_seed(build, spec):
    a, b, c = build(spec, seed=1), build(spec, seed=1), build(spec, seed=2)
    pa, pb, pc = (dict(m.named_parameters()) for m in (a, b, c))
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert any(not torch.equal(pa[k], pc[k]) for k in pa)
    for name, p in pa.items():  # zero biases, unit norms and layer scales, small matrices
        if name.endswith("bias"):
            assert torch.count_nonzero(p) == 0, name
        elif p.ndim == 1:
            assert torch.all(p == 1), name
    assert a.config.hidden_size == spec.hidden_size
    assert a.config.num_hidden_layers == spec.num_layers and a.config.patch_size == spec.patch_size


def test_rope_buffer_equals_the_transformers_value():
    """The allocated (meta -> cpu) module gets the RoPE inverse frequencies transformers computes."""
    from medfeat_dinov3.networks import dinov3_hf_config
    from transformers import DINOv3ViTModel

    spec = DINOV3["tiny"]
    reference = DINOv3ViTModel(dinov3_hf_config(spec)).rope_embeddings.inv_freq
    torch.testing.assert_close(build_dinov3(spec, seed=0).rope_embeddings.inv_freq, reference)
