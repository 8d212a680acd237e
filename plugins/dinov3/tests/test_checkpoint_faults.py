"""Every checkpoint loader of the plugin answers a broken file with one clear CheckpointError
(what was expected, where to get it), never an internal error, and never runs code from it: one
test per class of fault (empty, truncated, pickled objects), parametrised over the loaders."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from medfeat_dinov3.checkpoints import load_dinov2, load_dinov3
from medfeat_dinov3.config import Dinov2SlicesConfig, Dinov3SlicesConfig
from medfeat_dinov3.networks import DINOV2_REG, DINOV3, dinov2_hf_config, dinov3_hf_config

from medfeat.errors import CheckpointError


def _official(path: Path) -> None:
    load_dinov3(Dinov3SlicesConfig(model="tiny", checkpoint=path))


def _v3_folder(path: Path) -> None:  # path: <folder>/<weights file>
    dinov3_hf_config(DINOV3["tiny"]).to_json_file(str(path.parent / "config.json"))
    load_dinov3(Dinov3SlicesConfig(model="tiny", checkpoint=path.parent))


def _v2_folder(path: Path) -> None:
    dinov2_hf_config(DINOV2_REG["tiny"]).to_json_file(str(path.parent / "config.json"))
    load_dinov2(Dinov2SlicesConfig(model="tiny", checkpoint=path.parent))


# loader name -> (file it reads, relative to a fresh folder; how it is called on that file)
LOADERS: dict[str, tuple[str, Callable[[Path], object]]] = {
    "DINOv3 official (.pth)": ("dinov3_vits16_pretrain_lvd1689m-08c60483.pth", _official),
    "DINOv3 HF folder (model.safetensors)": ("hf/model.safetensors", _v3_folder),
    "DINOv3 HF folder (pytorch_model.bin)": ("hf/pytorch_model.bin", _v3_folder),
    "DINOv2-reg HF folder (pytorch_model.bin)": ("hf/pytorch_model.bin", _v2_folder),
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


def _refused(loader: str, path: Path, pattern: str) -> CheckpointError:
    with pytest.raises(CheckpointError, match=pattern) as err:
        LOADERS[loader][1](path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message and "Traceback" not in message
    assert err.value.remedy  # says where to get the right file
    return err.value


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_an_empty_file_is_named_as_such(tmp_path, loader):
    path = _file(tmp_path, loader)
    path.write_bytes(b"")
    _refused(loader, path, "is an empty file")


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_a_truncated_file_is_named_as_such(tmp_path, loader):
    path = _file(tmp_path, loader)
    state = {f"w{i}": torch.randn(64, 64) for i in range(4)}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _refused(loader, path, "could not be read.*truncated")


@pytest.mark.parametrize("writer", ["torch.save(module)", "pickle.dump"])
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_pickled_objects_are_refused_and_never_run(tmp_path, loader, writer):
    path = _file(tmp_path, loader)
    marker = tmp_path / "code-ran"
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64))
    net.payload = _RunsCode(marker)
    if writer == "pickle.dump":
        path.write_bytes(pickle.dumps({"model": net.state_dict(), "x": _RunsCode(marker)}, 2))
    else:
        torch.save(net, path)
    pattern = "could not be read" if path.suffix == ".safetensors" else "pickled Python objects"
    _refused(loader, path, pattern)
    assert not marker.exists()
