"""Loaders: random checkpoints built from the official manifests (every key and shape) load
strictly; broken or wrong checkpoints raise CheckpointError naming the remedy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from medfeat_leaf.checkpoints import (
    UNET_PREFIX,
    convert_ldm_unet,
    load_kl_vae,
    load_ldm_unet,
    load_strict,
)
from medfeat_leaf.networks import LDM_KL8_UNET, build_unet, build_vae

from medfeat.errors import CheckpointError, ConfigError

MANIFESTS = Path(__file__).resolve().parents[3].parent / "shared" / "reference" / "checkpoints"


def _manifest(name: str) -> dict[str, list[int]]:
    path = MANIFESTS / name
    if not path.is_file():
        pytest.skip(f"checkpoint manifest {path} not available")
    return json.loads(path.read_text())


def test_ldm_unet_manifest_maps_onto_the_full_size_unet_key_for_key():
    manifest = _manifest("ldm_lsun_churches_unet_compvis.json")
    assert all(k.startswith(UNET_PREFIX) for k in manifest)
    with torch.device("meta"):
        unet = build_unet(LDM_KL8_UNET, 4, 4)
        state = {k[len(UNET_PREFIX) :]: torch.empty(s) for k, s in manifest.items()}
    converted = convert_ldm_unet(state, LDM_KL8_UNET)
    own = unet.state_dict()
    assert converted.keys() == own.keys()
    assert all(tuple(converted[k].shape) == tuple(own[k].shape) for k in own)
    load_strict(unet, converted, "LDM U-Net", "test")


def test_unet_conversion_rejects_missing_and_stray_keys():
    manifest = _manifest("ldm_lsun_churches_unet_compvis.json")
    with torch.device("meta"):
        state = {k[len(UNET_PREFIX) :]: torch.empty(s) for k, s in manifest.items()}
    broken = dict(state)
    broken.pop("output_blocks.5.1.qkv.weight")
    with pytest.raises(CheckpointError, match="output_blocks.5.1.qkv.weight"):
        convert_ldm_unet(broken, LDM_KL8_UNET)
    with pytest.raises(CheckpointError, match="no place"):
        convert_ldm_unet({**state, "extra.weight": torch.empty(1, device="meta")}, LDM_KL8_UNET)


def test_small_unet_true_strict_load_from_a_compvis_file(tmp_path):
    """A real file round trip at small size: LDM layout -> file -> strict load, values kept."""
    from medfeat_leaf.networks import UNetSpec

    spec = UNetSpec((32, 64), (True, False), 1, 2, 0.0)
    unet = build_unet(spec, 4, 4)
    ldm = _ldm_state_for(spec)
    torch.save({"state_dict": {UNET_PREFIX + k: v for k, v in ldm.items()}, "global_step": 7},
               tmp_path / "model.ckpt")  # fmt: skip
    load_ldm_unet(tmp_path / "model.ckpt", unet, spec)
    torch.testing.assert_close(unet.conv_in.weight, ldm["input_blocks.0.0.weight"])
    torch.testing.assert_close(
        unet.down_blocks[0].downsamplers[0].conv1.weight, ldm["input_blocks.2.0.in_layers.2.weight"]
    )


def _ldm_state_for(spec) -> dict[str, torch.Tensor]:
    """Random LDM-named tensors for a small spec (names as in openaimodel.UNetModel)."""
    g = torch.Generator().manual_seed(0)
    c0, temb = spec.channels[0], spec.channels[0] * 4
    sd: dict[str, torch.Tensor] = {}

    def t(*shape):
        return torch.randn(*shape, generator=g)

    def res(name, cin, cout):
        sd.update({
            f"{name}.in_layers.0.weight": t(cin), f"{name}.in_layers.0.bias": t(cin),
            f"{name}.in_layers.2.weight": t(cout, cin, 3, 3), f"{name}.in_layers.2.bias": t(cout),
            f"{name}.emb_layers.1.weight": t(2 * cout, temb), f"{name}.emb_layers.1.bias": t(2 * cout),
            f"{name}.out_layers.0.weight": t(cout), f"{name}.out_layers.0.bias": t(cout),
            f"{name}.out_layers.3.weight": t(cout, cout, 3, 3), f"{name}.out_layers.3.bias": t(cout),
        })  # fmt: skip
        if cin != cout:
            sd[f"{name}.skip_connection.weight"] = t(cout, cin, 1, 1)
            sd[f"{name}.skip_connection.bias"] = t(cout)

    def attn(name, c):
        sd.update({
            f"{name}.norm.weight": t(c), f"{name}.norm.bias": t(c),
            f"{name}.qkv.weight": t(3 * c, c, 1), f"{name}.qkv.bias": t(3 * c),
            f"{name}.proj_out.weight": t(c, c, 1), f"{name}.proj_out.bias": t(c),
        })  # fmt: skip

    sd.update({"input_blocks.0.0.weight": t(c0, 4, 3, 3), "input_blocks.0.0.bias": t(c0)})
    sd.update({"time_embed.0.weight": t(temb, c0), "time_embed.0.bias": t(temb),
               "time_embed.2.weight": t(temb, temb), "time_embed.2.bias": t(temb)})  # fmt: skip
    chans, block, cin, skips = spec.channels, 1, c0, [c0]
    for lvl, c in enumerate(chans):
        for _ in range(spec.layers_per_level):
            res(f"input_blocks.{block}.0", cin, c)
            if spec.attention[lvl]:
                attn(f"input_blocks.{block}.1", c)
            cin = c
            skips.append(c)
            block += 1
        if lvl < len(chans) - 1:
            res(f"input_blocks.{block}.0", c, c)
            skips.append(c)
            block += 1
    res("middle_block.0", cin, cin)
    attn("middle_block.1", cin)
    res("middle_block.2", cin, cin)
    block = 0
    for lvl in reversed(range(len(chans))):
        c = chans[lvl]
        for j in range(spec.layers_per_level + 1):
            res(f"output_blocks.{block}.0", cin + skips.pop(), c)
            cin = c
            if spec.attention[lvl]:
                attn(f"output_blocks.{block}.1", c)
            if lvl > 0 and j == spec.layers_per_level:
                res(f"output_blocks.{block}.{2 if spec.attention[lvl] else 1}", c, c)
            block += 1
    sd.update({"out.0.weight": t(c0), "out.0.bias": t(c0), "out.2.weight": t(4, c0, 3, 3),
               "out.2.bias": t(4)})  # fmt: skip
    return sd


@pytest.mark.slow
def test_kl_f8_vae_true_strict_load_from_the_manifest_ignoring_loss_keys(tmp_path):
    manifest = _manifest("ldm_kl_f8_vae.json")
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=g) for k, s in manifest.items()}
    state["loss.discriminator.main.0.weight"] = torch.randn(64, 3, 4, 4)
    state["loss.logvar"] = torch.zeros(())
    torch.save({"state_dict": state}, tmp_path / "model.ckpt")
    vae = build_vae()
    load_kl_vae(tmp_path / "model.ckpt", vae)
    torch.testing.assert_close(vae.encoder.conv_in.weight, state["encoder.conv_in.weight"])
    torch.testing.assert_close(
        vae.decoder.mid_block.attentions[0].to_v.weight,
        state["decoder.mid.attn_1.v.weight"][..., 0, 0],
    )
    torch.testing.assert_close(vae.post_quant_conv.weight, state["post_quant_conv.weight"])
    # a diffusers-format folder of the same model loads too
    vae.save_pretrained(tmp_path / "diffusers-vae")
    again = build_vae()
    load_kl_vae(tmp_path / "diffusers-vae", again)
    torch.testing.assert_close(again.encoder.conv_in.weight, state["encoder.conv_in.weight"])


def test_bad_checkpoints_raise_checkpoint_errors(tmp_path):
    spec_vae = build_vae((32, 32), 4)
    with pytest.raises(CheckpointError, match="does not exist") as err:
        load_kl_vae(tmp_path / "missing.ckpt", spec_vae)
    assert "ommer-lab.com" in (err.value.remedy or str(err.value))
    (tmp_path / "trunc.ckpt").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(CheckpointError, match="could not be read"):
        load_kl_vae(tmp_path / "trunc.ckpt", spec_vae)
    # a VAE handed to the U-Net loader: wrong kind
    torch.save({"encoder.conv_in.weight": torch.zeros(1)}, tmp_path / "vae.ckpt")
    with pytest.raises(CheckpointError, match="looks like a VAE"):
        load_ldm_unet(tmp_path / "vae.ckpt", build_unet(LDM_KL8_UNET, 4, 4), LDM_KL8_UNET)
    # a U-Net handed to the VAE loader
    torch.save({UNET_PREFIX + "out.0.weight": torch.zeros(1)}, tmp_path / "unet.ckpt")
    with pytest.raises(CheckpointError, match="not a kl-f8"):
        load_kl_vae(tmp_path / "unet.ckpt", spec_vae)
    # right kind, wrong shapes
    small = build_vae((32, 32), 4)
    state = {k: v for k, v in build_vae((32, 64), 4).state_dict().items()}
    (tmp_path / "folder").mkdir()
    from safetensors.torch import save_file

    save_file(state, tmp_path / "folder" / "diffusion_pytorch_model.safetensors")
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_kl_vae(tmp_path / "folder", small)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no diffusers weights"):
        load_kl_vae(tmp_path / "empty", small)


def test_ldm_preset_without_weights_is_a_config_error(tiny):
    from medfeat_leaf.build import build_leaf
    from medfeat_leaf.config import LeafConfig

    with pytest.raises(ConfigError, match="unet_checkpoint and vae_checkpoint"):
        build_leaf(LeafConfig())
