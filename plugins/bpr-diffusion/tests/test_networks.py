"""The networks: the DDPM U-Net takes coordinates by channel concatenation at the input and follows
the paper's attention rule; APE's published pyramid."""

from __future__ import annotations

import torch
from medfeat_bpr_diffusion.config import UNetConfig
from medfeat_bpr_diffusion.networks import APENetwork, DiffusionUNet3d, attention_kinds


def test_coordinates_are_concatenated_to_the_noisy_patch_at_the_input(tiny_unet):
    torch.manual_seed(0)
    net = DiffusionUNet3d(UNetConfig(**tiny_unet), coord_channels=3, patch_size_vox=(8, 16, 16))
    seen = {}
    handle = net.inp.register_forward_pre_hook(lambda m, args: seen.update(x=args[0].clone()))
    x_t, coords = torch.randn(2, 1, 8, 16, 16), torch.rand(2, 3, 8, 16, 16)
    eps, feats = net(x_t, coords, torch.tensor([3, 50]), return_features=True)
    assert net.inp.in_channels == 1 + 3
    assert torch.equal(seen["x"], torch.cat([x_t, coords], 1))
    handle.remove()
    assert eps.shape == x_t.shape
    assert [f.shape for f in feats] == [(2, 4, 8, 16, 16), (2, 8, 4, 8, 8)]
    # the coordinates condition the prediction
    assert not torch.allclose(
        net(x_t, coords, torch.tensor([3, 50])), net(x_t, coords * 0, torch.tensor([3, 50]))
    )


def test_attention_rule_linear_at_high_resolution_full_where_channels_exceed_tokens(tiny_unet):
    full_size = UNetConfig()  # 64 * (1, 2, 4, 8) channels
    assert attention_kinds(full_size, (32, 128, 128)) == ["linear"] * 4
    small_patch = attention_kinds(full_size, (8, 16, 16))  # tokens 2048, 256, 32, 4 vs 64..512 ch
    assert small_patch == ["linear", "linear", "full", "full"]
    net = DiffusionUNet3d(UNetConfig(**tiny_unet), 3, (4, 4, 4))  # 64 tokens, 4 channels -> linear
    kinds = [type(m).__name__ for m in net.modules() if type(m).__name__.endswith("Attention")]
    assert "LinearAttention" in kinds and "FullAttention" in kinds  # bottleneck is always full


def test_published_configuration_has_the_papers_pyramid():
    net = APENetwork()
    keys = net.state_dict()
    assert keys["fpn.stem.conv.weight"].shape == (95, 1, 4, 4, 4)  # 96 - 1 mask channel
    assert [len(s.blocks) for s in net.fpn.left_stages] == [2, 2, 8]
    assert [len(s.blocks) for s in net.fpn.right_stages] == [1, 1, 1]
    assert len(net.fpn.bottom_stage.blocks) == 3
    assert keys["fpn.left_stages.0.blocks.0.conv_2.weight"].shape == (384, 96, 1, 1, 1)
    assert [keys[f"head.convs.{i}.weight"].shape[1] for i in range(4)] == [96, 192, 384, 768]
    assert "head.convs.0.bias" in keys and "head.convs.1.bias" not in keys
    assert keys["scale"].shape == (3, 1, 1, 1)
