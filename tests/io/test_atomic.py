"""medfeat.io.atomic: writes that leave the old file or the new one, never half of one, and
never an input of the run."""

import pytest

from medfeat.errors import InputFileError
from medfeat.io.atomic import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    check_not_protected,
)


def test_atomic_writes_create_files(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "sub" / "b.txt", "hello")
    atomic_write_json(tmp_path / "c.json", {"k": [1, 2]})
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "sub" / "b.txt").read_text() == "hello"
    assert '"k"' in (tmp_path / "c.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "c.json", "sub"]


def test_failed_write_leaves_no_partial_file_and_keeps_old_content(tmp_path):
    target = tmp_path / "out.nii.gz"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".nii.gz")
        tmp.write_text("half")
        raise RuntimeError("writer crashed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]


def test_unserialisable_json_writes_nothing(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "x.json", {"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_protected_paths(tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(InputFileError, match="input of this run"):
        check_not_protected(tmp_path / "in" / "x.nii.gz", {tmp_path / "in"})
    with pytest.raises(InputFileError):
        check_not_protected(tmp_path / "img.raw", {tmp_path / "img.raw"})
    with pytest.raises(InputFileError):  # .mhd writes its .raw next to it
        check_not_protected(tmp_path / "img.mhd", {tmp_path / "img.raw"})
    check_not_protected(tmp_path / "out.nii.gz", {tmp_path / "in"})


def test_json_is_strict_non_finite_numbers_become_null(tmp_path):
    import json

    import numpy as np

    obj = {"dice": {"1": 0.5, "7": float("nan")}, "hd": [np.float64("inf"), 2.0], "n": 3,
           "f32": np.float32("nan"), "arr": np.array([1.0, np.nan])}  # fmt: skip
    atomic_write_json(tmp_path / "m.json", obj)
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text

    def strict(token):
        raise ValueError(token)

    loaded = json.loads(text, parse_constant=strict)  # a strict parser accepts it
    assert loaded == {"dice": {"1": 0.5, "7": None}, "hd": [None, 2.0], "n": 3, "f32": None,
                      "arr": [1.0, None]}  # fmt: skip


def test_atomic_outputs_get_the_usual_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "p.json", {"a": 1})
        assert (tmp_path / "p.json").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    finally:
        os.umask(mask)
