"""Input-conv widening, head count, and the LDM attention conversion (numerically)."""

from __future__ import annotations

import torch
from medfeat_leaf.checkpoints import _attention
from medfeat_leaf.networks import UNetSpec, build_unet, set_attention_heads, widen_conv_in
from torch.nn import functional as F


def test_widened_input_conv_keeps_the_pretrained_response_for_the_image_half():
    torch.manual_seed(0)
    unet = build_unet(UNetSpec((32, 64), (False, True), 1, 2, 0.0), 4, 4)
    old = unet.conv_in
    w, b = old.weight.detach().clone(), old.bias.detach().clone()
    widen_conv_in(unet)
    new = unet.conv_in
    assert new.in_channels == 8 and unet.config.in_channels == 8
    torch.testing.assert_close(new.bias, b)  # bias unchanged
    torch.testing.assert_close(new.weight[:, :4], w / 2)
    torch.testing.assert_close(new.weight[:, 4:], w / 2)
    z = torch.randn(2, 4, 8, 8)
    # the same latent in both halves gives exactly the pretrained response ...
    torch.testing.assert_close(new(torch.cat([z, z], 1)), F.conv2d(z, w, b, padding=1))
    # ... and each half alone contributes half of the pretrained weights
    zero = torch.zeros_like(z)
    torch.testing.assert_close(
        new(torch.cat([z, zero], 1)) - b.view(1, -1, 1, 1),
        (F.conv2d(z, w, None, padding=1)) / 2,
    )
    out = unet(torch.randn(2, 8, 8, 8), torch.tensor([0, 999])).sample
    assert out.shape == (2, 4, 8, 8)


def _ldm_attention(x, sd, heads):
    """Reference: LDM AttentionBlock with QKVAttentionLegacy (openaimodel.py)."""
    b, c, h, w = x.shape
    t = x.reshape(b, c, -1)
    n = F.group_norm(t, 32, sd["norm.weight"], sd["norm.bias"], eps=1e-5)
    qkv = F.conv1d(n, sd["qkv.weight"], sd["qkv.bias"])
    ch = c // heads
    q, k, v = qkv.reshape(b * heads, 3 * ch, -1).split(ch, dim=1)
    scale = 1 / ch**0.25
    weight = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale), dim=-1)
    a = torch.einsum("bts,bcs->bct", weight, v).reshape(b, c, -1)
    out = F.conv1d(a, sd["proj_out.weight"], sd["proj_out.bias"])
    return (t + out).reshape(b, c, h, w)


def test_converted_ldm_attention_matches_the_reference_computation():
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(0)
    c, heads = 64, 4
    sd = {
        "norm.weight": torch.randn(c),
        "norm.bias": torch.randn(c),
        "qkv.weight": torch.randn(3 * c, c, 1) / 8,
        "qkv.bias": torch.randn(3 * c) / 8,
        "proj_out.weight": torch.randn(c, c, 1) / 8,
        "proj_out.bias": torch.randn(c) / 8,
    }
    attn = Attention(
        c, heads=1, dim_head=c, norm_num_groups=32, residual_connection=True, bias=True,
        upcast_softmax=True, _from_deprecated_attn_block=True, eps=1e-5,
    )  # fmt: skip
    set_attention_heads(attn, heads)
    converted: dict = {}
    _attention({f"a.{k}": v for k, v in sd.items()}, "a", "", heads, converted)
    attn.load_state_dict({k.lstrip("."): v for k, v in converted.items()}, strict=True)
    x = torch.randn(2, c, 4, 5)
    torch.testing.assert_close(attn(x), _ldm_attention(x, sd, heads), atol=1e-5, rtol=1e-4)


def test_heads_are_fixed_per_block_not_per_width():
    from diffusers.models.attention_processor import Attention

    unet = build_unet(UNetSpec((32, 64), (True, True), 1, 8, 0.0), 4, 4)
    attns = [m for m in unet.modules() if isinstance(m, Attention)]
    assert attns and all(m.heads == 8 for m in attns)
    assert {m.inner_dim // m.heads for m in attns} == {4, 8}
