"""Every checkpoint loader of the plugin answers a broken file with one clear CheckpointError
(what was expected, where to get it), never an internal error, and never runs code from it: one
test per class of fault (empty, truncated, pickled objects), parametrised over the loaders."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from medfeat_bpr_diffusion.checkpoints import load_ape, load_bpr
from medfeat_bpr_diffusion.config import ProbeConfig
from medfeat_bpr_diffusion.heads import ProbeHead
from medfeat_bpr_diffusion.pretrain import build_from_checkpoint

from medfeat.context import RunContext
from medfeat.errors import CheckpointError


def _probe(path: Path) -> None:
    ProbeHead(ProbeConfig(), RunContext(), "fpn").load(path)


# loader name -> (file name it reads, how it is called on that file)
LOADERS: dict[str, tuple[str, Callable[[Path], object]]] = {
    "ape (Lightning .ckpt)": ("ape.ckpt", load_ape),
    "bpr-slice-score (model.pt)": ("model.pt", load_bpr),
    "bpr-ddpm checkpoint (last.pt)": ("last.pt", build_from_checkpoint),
    "probe head (head.pt)": ("head.pt", _probe),
}


class _RunsCode:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _refused(loader: str, path: Path, pattern: str) -> CheckpointError:
    with pytest.raises(CheckpointError, match=pattern) as err:
        LOADERS[loader][1](path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message and "Traceback" not in message
    assert err.value.remedy  # says where to get the right file
    return err.value


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_an_empty_file_is_named_as_such(tmp_path, loader):
    path = tmp_path / LOADERS[loader][0]
    path.write_bytes(b"")
    _refused(loader, path, "is an empty file")


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_a_truncated_file_is_named_as_such(tmp_path, loader):
    path = tmp_path / LOADERS[loader][0]
    torch.save({"state_dict": {f"w{i}": torch.randn(64, 64) for i in range(4)}}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _refused(loader, path, "could not be read.*truncated")


@pytest.mark.parametrize("writer", ["torch.save(module)", "pickle.dump"])
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_pickled_objects_are_refused_and_never_run(tmp_path, loader, writer):
    path = tmp_path / LOADERS[loader][0]
    marker = tmp_path / "code-ran"
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3))
    net.payload = _RunsCode(marker)
    if writer == "pickle.dump":
        path.write_bytes(pickle.dumps({"state_dict": net.state_dict(), "x": _RunsCode(marker)}, 2))
    else:
        torch.save(net, path)
    _refused(loader, path, "pickled Python objects")
    assert not marker.exists()
