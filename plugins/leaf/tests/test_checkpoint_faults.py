"""Every checkpoint loader of the plugin answers a broken file with one clear CheckpointError
(what was expected, where to get it), never an internal error, and never runs code from it: one
test per class of fault (empty, truncated, pickled objects), parametrised over the loaders."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from medfeat_leaf.backbone import Dinov2Teacher
from medfeat_leaf.build import build_leaf
from medfeat_leaf.checkpoints import load_kl_vae, load_ldm_unet
from medfeat_leaf.heads import load_trained
from medfeat_leaf.networks import UNetSpec, build_unet, build_vae
from medfeat_leaf.train import Trainer

from medfeat.context import RunContext
from medfeat.errors import CheckpointError

SPEC = UNetSpec((32, 64), (False, True), 1, 2, 0.0)


def _unet(path: Path, tiny_config=None) -> None:
    load_ldm_unet(path, build_unet(SPEC, 4, 4), SPEC)


def _vae(path: Path, tiny_config=None) -> None:
    load_kl_vae(path, build_vae((32, 32), 4, 1, 8))


def _teacher(path: Path, tiny_config=None) -> None:  # path: <folder>/pytorch_model.bin
    from transformers import Dinov2WithRegistersConfig

    Dinov2WithRegistersConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        patch_size=14, image_size=56, num_register_tokens=4,
    ).to_json_file(str(path.parent / "config.json"))  # fmt: skip
    Dinov2Teacher(path.parent, image_size_px=56)


def _resume(path: Path, tiny_config) -> None:  # path: <out>/checkpoints/last.pt
    from medfeat_leaf.config import SyntheticBlobsConfig
    from medfeat_leaf.datasets import SyntheticBlobs

    samples = list(
        SyntheticBlobs(SyntheticBlobsConfig(size_px=32, n_train=2)).segmentation_samples("train")
    )
    model = build_leaf(tiny_config(max_steps=2))
    Trainer(model, path.parent.parent, RunContext(seed=0)).fit(samples, [])


# loader name -> (file it reads, relative to a fresh folder; how it is called on that file)
LOADERS: dict[str, tuple[str, Callable[..., object]]] = {
    "LDM U-Net (model.ckpt)": ("model.ckpt", _unet),
    "kl-f8 VAE (model.ckpt)": ("model.ckpt", _vae),
    "LEAF result (leaf.pt)": ("leaf.pt", lambda path, tiny_config: load_trained(path)),
    "LEAF training (checkpoints/last.pt)": ("out/checkpoints/last.pt", _resume),
    "DINOv2 teacher (pytorch_model.bin)": ("dino/pytorch_model.bin", _teacher),
    "DINOv2 teacher (model.safetensors)": ("dino/model.safetensors", _teacher),
}


class _RunsCode:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _file(tmp_path: Path, loader: str) -> Path:
    path = tmp_path / LOADERS[loader][0]
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _refused(loader: str, path: Path, pattern: str, tiny) -> CheckpointError:
    with pytest.raises(CheckpointError, match=pattern) as err:
        LOADERS[loader][1](path, tiny)
    message = str(err.value)
    assert str(path) in message and "\n" not in message and "Traceback" not in message
    assert err.value.remedy  # says where to get the right file
    return err.value


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_an_empty_file_is_named_as_such(tmp_path, loader, tiny):
    path = _file(tmp_path, loader)
    path.write_bytes(b"")
    _refused(loader, path, "is an empty file", tiny)


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_a_truncated_file_is_named_as_such(tmp_path, loader, tiny):
    path = _file(tmp_path, loader)
    state = {f"w{i}": torch.randn(64, 64) for i in range(4)}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({"state_dict": state}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _refused(loader, path, "could not be read.*truncated", tiny)


@pytest.mark.parametrize("writer", ["torch.save(module)", "pickle.dump"])
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_pickled_objects_are_refused_and_never_run(tmp_path, loader, writer, tiny):
    path = _file(tmp_path, loader)
    marker = tmp_path / "code-ran"
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))
    net.payload = _RunsCode(marker)
    if writer == "pickle.dump":
        path.write_bytes(pickle.dumps({"state_dict": net.state_dict(), "x": _RunsCode(marker)}, 2))
    else:
        torch.save(net, path)
    pattern = "could not be read" if path.suffix == ".safetensors" else "pickled Python objects"
    _refused(loader, path, pattern, tiny)
    assert not marker.exists()
