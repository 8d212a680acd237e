"""medfeat.weights: safe reading (no unpickling of code), strict loading with a key diff, atomic save."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from medfeat.errors import CheckpointError
from medfeat.weights import (
    check_state_dict,
    key_diff,
    load_state_dict_strict,
    read_checkpoint,
    read_state_dict,
    save_checkpoint,
    unwrap_state_dict,
)

SOURCE = "Get it from example.org/weights."


class _RunsCode:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))


def read(path, **kw):
    return read_checkpoint(path, what="test model", remedy=SOURCE, **kw)


# ---------------------------------------------------------------------------- reading
@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_a_pickle_that_runs_code_is_refused_without_running_it(tmp_path, writer):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    obj = {"w": torch.zeros(2), "payload": _RunsCode(marker)}
    if writer == "torch":
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(CheckpointError, match="pickled Python objects") as err:
        read(path)
    assert not marker.exists()
    assert "never unpickles" in str(err.value) and "example.org/weights" in str(err.value)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        read_state_dict(path, what="test model", remedy=SOURCE)
    assert not marker.exists()


def test_tensors_in_plain_containers_round_trip(tmp_path):
    obj = {"format": "x/1", "step": 3, "hist": [{"loss": 0.5}], "w": torch.arange(4.0)}
    save_checkpoint(obj, tmp_path / "c.pt")
    back = read(tmp_path / "c.pt", format="x/1")
    assert back["step"] == 3 and back["hist"] == [{"loss": 0.5}]
    assert torch.equal(back["w"], torch.arange(4.0))
    with pytest.raises(CheckpointError, match="is of kind 'x/1', expected 'y/1'"):
        read(tmp_path / "c.pt", format="y/1")


def test_safetensors_files_are_read_and_written(tmp_path):
    state = {"a.weight": torch.randn(2, 3), "a.bias": torch.zeros(2)}
    save_checkpoint(state, tmp_path / "m.safetensors")
    back = read_state_dict(tmp_path / "m.safetensors", what="test model", remedy=SOURCE)
    assert back.keys() == state.keys() and torch.equal(back["a.weight"], state["a.weight"])


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        (b"", "is an empty file"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\n", "Git LFS pointer"),
        (b"<!DOCTYPE html><html>Request access</html>", "HTML page"),
        (b"PK\x03\x04 not a zip", r"\(14 bytes\) could not be read.*truncated"),
        (b"\x80\x02 truncated pickle", "could not be read.*truncated"),
    ],
)
def test_unreadable_files_say_what_they_are_and_where_to_get_the_right_one(
    tmp_path, content, expected
):
    path = tmp_path / "w.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=expected) as err:
        read(path)
    assert err.value.remedy.endswith(SOURCE)


def test_truncated_torch_file_and_min_bytes(tmp_path):
    torch.save({"w": torch.zeros(1000)}, tmp_path / "w.pt")
    data = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="could not be read.*truncated"):
        read(tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="far too small for the test model weights"):
        read(tmp_path / "w.pt", min_bytes=len(data) + 1)


def test_state_dicts_are_unwrapped_from_known_keys_only(tmp_path):
    inner = {"w": torch.ones(2)}
    assert unwrap_state_dict({"state_dict": inner, "epoch": 3}) is inner
    assert unwrap_state_dict({"model": inner}, ("model", "state_dict")) is inner
    assert unwrap_state_dict(inner) is inner  # a flat state dict stays as it is
    torch.save({"state_dict": inner, "global_step": 7}, tmp_path / "l.ckpt")
    assert read_state_dict(tmp_path / "l.ckpt", what="m", remedy=SOURCE).keys() == {"w"}
    torch.save({"weights": inner}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not hold a state dict of tensors"):
        read_state_dict(tmp_path / "other.pt", what="m", remedy=SOURCE)


# ---------------------------------------------------------------------------- strict loading
def test_key_diff_lists_missing_unexpected_and_mis_shaped_keys_with_counts():
    net = _net()
    state = dict(net.state_dict())
    del state["0.bias"]
    state["2.weight"] = torch.zeros(5, 4)
    state.update({f"extra.{i}": torch.zeros(1) for i in range(5)})
    diff = key_diff(state, net)
    assert diff.missing == ["0.bias"]
    assert diff.unexpected == [f"extra.{i}" for i in range(5)]
    assert diff.wrong_shape == ["2.weight: found (5, 4), expected (2, 4)"]
    assert diff.describe() == (
        "1 missing (e.g. 0.bias); 5 unexpected (e.g. extra.0, extra.1, extra.2, ...); "
        "1 with the wrong shape (e.g. 2.weight: found (5, 4), expected (2, 4))"
    )
    assert not key_diff(net.state_dict(), net)
    # expected shapes may be given as plain tuples (an official file's layout)
    assert key_diff({"a": torch.zeros(2, 3)}, {"a": (2, 3)}).describe() == ""
    assert key_diff({"a": torch.zeros(2, 3)}, {"a": (3, 2)}).wrong_shape


def test_strict_load_refuses_with_the_diff_and_leaves_the_module_untouched(tmp_path):
    net, other = _net(), _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    state = dict(other.state_dict())
    state.pop("2.bias")
    with pytest.raises(CheckpointError, match=r"The toy checkpoint .*w.pt does not match") as err:
        load_state_dict_strict(net, state, what="toy", path=tmp_path / "w.pt", remedy=SOURCE)
    assert "1 missing (e.g. 2.bias)" in str(err.value) and err.value.remedy == SOURCE
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    load_state_dict_strict(net, other.state_dict(), what="toy")
    assert all(torch.equal(other.state_dict()[k], v) for k, v in net.state_dict().items())
    with pytest.raises(CheckpointError, match="The toy weights does not match.*1 unexpected"):
        check_state_dict({"a": 1, "b": 2}, {"a": (1,)}, what="toy")


# ---------------------------------------------------------------------------- atomic saving
def test_failed_save_leaves_the_target_intact_and_no_temporary_file(tmp_path):
    target = tmp_path / "last.pt"
    save_checkpoint({"step": 1}, target)
    good = target.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - whatever pickling raises
        save_checkpoint({"step": 2, "f": lambda: 0}, target)
    # written fine, but it could not be read back safely: refused before the rename
    with pytest.raises(CheckpointError, match="could not be read back"):
        save_checkpoint({"step": 3, "obj": _RunsCode(tmp_path / "x")}, target)
    assert target.read_bytes() == good
    assert os.listdir(tmp_path) == ["last.pt"]
    assert read(target)["step"] == 1
