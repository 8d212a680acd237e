"""medfeat.weights: safe reading (no unpickling of code), strict loading with a key diff, atomic save."""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from medfeat.errors import CheckpointError
from medfeat.weights import (
    SkippedObject,
    check_state_dict,
    key_diff,
    load_state_dict_strict,
    read_checkpoint,
    read_state_dict,
    save_checkpoint,
    skipped_objects,
    unwrap_state_dict,
)

SOURCE = "Get it from example.org/weights."


class _RunsCode:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _RunsSystem:
    """Unpickling this would run a shell command through os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))


def read(path, **kw):
    return read_checkpoint(path, what="test model", remedy=SOURCE, **kw)


# ---------------------------------------------------------------------------- reading
class _WritesOnSetstate:
    """Unpickling this with its real class would create a file in ``__setstate__``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __setstate__(self, state):
        open(state["marker"], "w").close()


def _lightning_module() -> types.ModuleType:
    """A stand-in for pytorch_lightning's callback module, importable only while saving."""
    mod = types.ModuleType("fake_lightning_callbacks")

    class ModelCheckpoint:
        pass

    class AttributeDict(dict):
        pass

    for cls in (ModelCheckpoint, AttributeDict):
        cls.__module__, cls.__qualname__ = mod.__name__, cls.__name__
        setattr(mod, cls.__name__, cls)
    return mod


def _lightning_checkpoint(path, marker, state):
    """A Lightning-like ``.ckpt``: the state dict beside epoch, step, versions, a callback keyed
    by its class, optimiser state, numpy scalars, hyper-parameters in a dict subclass and
    namespaces, and two objects that would write ``marker`` if they were rebuilt."""
    mod = _lightning_module()
    sys.modules[mod.__name__] = mod
    try:
        hparams = mod.AttributeDict(lr=1e-4, args=argparse.Namespace(config="ldm.yaml"))
        torch.save(
            {
                "epoch": 12,
                "global_step": 4000,
                "pytorch-lightning_version": "1.4.2",
                "state_dict": state,
                "callbacks": {
                    mod.ModelCheckpoint: {"best_model_score": torch.tensor(0.1), "dirpath": "x"}
                },
                "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(2)}}}],
                "lr_schedulers": [],
                "loops": {"fit_loop": {"epoch_progress": np.int64(12), "loss": np.float64(0.5)}},
                "hyper_parameters": hparams,
                "hparams_name": "kwargs",
                "evil": [_RunsCode(marker), _WritesOnSetstate(marker)],
            },
            path,
        )
    finally:
        del sys.modules[mod.__name__]  # from now on, importing it would fail


def test_a_lightning_checkpoint_loads_without_running_or_importing_anything(tmp_path):
    marker = tmp_path / "code-ran"
    net = _net()
    _lightning_checkpoint(tmp_path / "model.ckpt", marker, net.state_dict())
    state = read_state_dict(tmp_path / "model.ckpt", what="test model", remedy=SOURCE)
    assert not marker.exists()
    assert state.keys() == net.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    load_state_dict_strict(_net(), state, what="test model")

    obj = read(tmp_path / "model.ckpt")
    assert not marker.exists()
    assert obj["global_step"] == 4000 and obj["pytorch-lightning_version"] == "1.4.2"
    loop = obj["loops"]["fit_loop"]  # numpy scalars are allow-listed: rebuilt as numbers
    assert loop["epoch_progress"] == 12 and loop["loss"] == 0.5
    ((callback_key, callback),) = obj["callbacks"].items()
    assert issubclass(callback_key, SkippedObject)
    assert callback_key.global_name == "fake_lightning_callbacks.ModelCheckpoint"
    assert torch.equal(callback["best_model_score"], torch.tensor(0.1))
    hparams = obj["hyper_parameters"]  # a dict subclass: inert, its items only recorded
    assert isinstance(hparams, SkippedObject) and ("lr", 1e-4) in hparams.items
    assert all(isinstance(o, SkippedObject) for o in obj["evil"])
    assert [o.global_name for o in obj["evil"]] == [
        "io.open",
        f"{__name__}._WritesOnSetstate",
    ]
    assert set(skipped_objects(obj)) >= {"io.open", "argparse.Namespace"}
    with pytest.raises(CheckpointError, match=r"pickled Python objects \(fake_lightning"):
        read(tmp_path / "model.ckpt", plain=True)  # medfeat's own files hold nothing else
    assert not marker.exists()


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_objects_that_would_run_code_are_never_rebuilt(tmp_path, writer):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    obj = {"w": torch.zeros(2), "payload": _RunsCode(marker), "s": _WritesOnSetstate(marker)}
    if writer == "torch":
        torch.save(obj, path)
    else:  # plain pickle: even the tensors are pickled objects (a nested torch.load)
        path.write_bytes(pickle.dumps(obj, protocol=2))
    if writer == "torch":
        back = read(path)
        assert isinstance(back["payload"], SkippedObject) and torch.equal(back["w"], obj["w"])
    with pytest.raises(CheckpointError, match="pickled Python objects") as err:
        read_state_dict(path, what="test model", remedy=SOURCE)
    assert not marker.exists()
    assert "never runs code" in str(err.value) and "example.org/weights" in str(err.value)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        read(path, plain=True)
    assert not marker.exists()


def test_a_pickled_module_or_a_blocked_module_is_refused(tmp_path):
    torch.save(_net(), tmp_path / "module.pt")  # a whole pickled nn.Module
    with pytest.raises(CheckpointError, match=r"pickled Python objects \(torch.nn.modules"):
        read(tmp_path / "module.pt")
    with pytest.raises(CheckpointError, match=r"pickled Python objects \(torch.nn.modules"):
        read_state_dict(tmp_path / "module.pt", what="test model", remedy=SOURCE)
    path = tmp_path / "sys.pt"
    torch.save({"w": torch.zeros(1), "x": _RunsSystem(str(tmp_path / "m"))}, path)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        read_state_dict(path, what="test model", remedy=SOURCE)
    assert not (tmp_path / "m").exists()


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


def test_a_pickle_cannot_rewrite_an_allowed_function_or_class(tmp_path):
    """BUILD on a global (setting a function's defaults, a class's attributes) is refused."""
    rebuild = torch._utils._rebuild_tensor_v2
    before = rebuild.__defaults__
    state = b"N}X\x0c\x00\x00\x00__defaults__(K\x01ts\x86b."  # (None, {"__defaults__": (1,)})
    attacks = {
        "function": b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n" + state,
        "class": b"\x80\x02ctorch.storage\nTypedStorage\n" + state,
        "skipped class": b"\x80\x02cfake.module\nThing\n" + state,
    }
    try:
        for name, data in attacks.items():
            path = tmp_path / f"{name}.pt"
            path.write_bytes(data)
            with pytest.raises(CheckpointError, match="could not be read|pickled Python objects"):
                read(path)
        assert rebuild.__defaults__ == before
        assert getattr(torch.storage.TypedStorage, "__defaults__", None) is None
    finally:  # never leave torch broken for the other tests
        rebuild.__defaults__ = before
        if "__defaults__" in vars(torch.storage.TypedStorage):
            del torch.storage.TypedStorage.__defaults__
