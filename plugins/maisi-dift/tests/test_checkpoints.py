"""Official-format loaders: strict loads of random checkpoints built from the manifests, clear refusals."""

from __future__ import annotations

import pytest
import torch
from medfeat_maisi_dift.checkpoints import load_autoencoder_weights, load_unet_weights
from medfeat_maisi_dift.networks import (
    AUTOENCODER_TINY,
    AUTOENCODER_V1,
    UNET_TINY,
    UNET_V1,
    build_autoencoder,
    build_unet,
)
from medfeat_maisi_dift.testing import random_state_dict, unet_file_content

from medfeat.cli.main import main
from medfeat.errors import CheckpointError


def test_full_size_autoencoder_loads_strictly(tmp_path, manifest):
    sd = random_state_dict(manifest("maisi_v1_autoencoder"))
    path = tmp_path / "autoencoder_epoch273.pt"
    torch.save(sd, path)
    module = build_autoencoder(AUTOENCODER_V1)
    load_autoencoder_weights(module, path)
    key = "encoder.blocks.0.conv.conv.weight"
    assert torch.equal(module.state_dict()[key], sd[key])


@pytest.mark.slow
def test_full_size_unet_loads_strictly(tmp_path, manifest):
    sd = random_state_dict(manifest("maisi_v1_diffusion_unet"), seed=1, cheap=True)
    path = tmp_path / "diff_unet_3d_ddpm.pt"
    torch.save(unet_file_content(sd, 1.0055), path)
    module = build_unet(UNET_V1)
    scale = load_unet_weights(module, path)
    assert scale == pytest.approx(1.0055)
    for key in (
        "conv_in.conv.weight",
        "up_blocks.3.resnets.2.conv2.conv.bias",
        "out.2.conv.weight",
    ):
        assert torch.equal(module.state_dict()[key], sd[key])


@pytest.fixture
def tiny_files(tmp_path):
    ae, unet = build_autoencoder(AUTOENCODER_TINY), build_unet(UNET_TINY)
    torch.save(ae.state_dict(), tmp_path / "ae.pt")
    torch.save(unet_file_content(unet.state_dict()), tmp_path / "unet.pt")
    return tmp_path, ae, unet


def refusal(fn, module, path) -> str:
    with pytest.raises(CheckpointError) as err:
        fn(module, path)
    return str(err.value)


def test_refuses_missing_and_truncated(tiny_files):
    folder, ae, unet = tiny_files
    msg = refusal(load_unet_weights, unet, folder / "nope.pt")
    assert "does not exist" in msg and "diff_unet_3d_ddpm.pt" in msg
    data = (folder / "unet.pt").read_bytes()
    (folder / "cut.pt").write_bytes(data[: len(data) // 2])
    assert "truncated" in refusal(load_unet_weights, unet, folder / "cut.pt")


def test_refuses_swapped_files(tiny_files):
    folder, ae, unet = tiny_files
    assert "is an autoencoder state dict" in refusal(load_unet_weights, unet, folder / "ae.pt")
    assert "is a diffusion U-Net file" in refusal(load_autoencoder_weights, ae, folder / "unet.pt")


def test_refuses_rflow_unet(tiny_files):
    folder, _, unet = tiny_files
    sd = {k: v for k, v in unet.state_dict().items() if "region_index_layer" not in k}
    sd["class_embedding.weight"] = torch.zeros(128, 64)
    torch.save(unet_file_content(sd), folder / "rflow.pt")
    assert "rflow" in refusal(load_unet_weights, unet, folder / "rflow.pt")


def test_refuses_other_architecture_with_details(tiny_files, manifest):
    folder, _, unet = tiny_files
    v1_ae_shapes = manifest("maisi_v1_autoencoder")
    torch.save(random_state_dict(v1_ae_shapes), folder / "big_ae.pt")
    msg = refusal(
        load_autoencoder_weights, build_autoencoder(AUTOENCODER_TINY), folder / "big_ae.pt"
    )
    assert "wrong shape" in msg and "expected" in msg
    bad = dict(unet.state_dict())
    bad.pop("conv_in.conv.bias")
    torch.save(unet_file_content(bad), folder / "missing.pt")
    assert "1 missing (e.g. conv_in.conv.bias)" in refusal(
        load_unet_weights, unet, folder / "missing.pt"
    )
    torch.save({"state_dict": unet.state_dict()}, folder / "wrapped.pt")
    assert "should be a dict with keys" in refusal(load_unet_weights, unet, folder / "wrapped.pt")


def test_unreadable_checkpoint_from_yaml_exits_2(tmp_path, capsys):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a checkpoint")
    path = tmp_path / "p.yaml"
    path.write_text(
        "kind: correspondence\ndata: {name: breathing-phantom, shape: [24, 32, 32]}\n"
        "backbone: {name: maisi-dift, autoencoder_checkpoint: x.pt, unet_checkpoint: x.pt}\n"
        "matcher: {name: meddift-matcher}\n"
    )  # relative checkpoint paths: next to the pipeline file
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr()
    assert "could not be read" in err.out + err.err and str(bad) in err.out + err.err
