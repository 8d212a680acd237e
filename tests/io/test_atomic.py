"""medfeat.io.atomic: writes that leave the old file or the new one, never half of one, and
never an input of the run."""

from pathlib import Path

import numpy as np
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


def _no_temporaries(folder):
    return [p.name for p in folder.iterdir() if ".tmp" in p.name]


def test_a_full_disk_is_one_clear_message_and_leaves_no_file(tmp_path, monkeypatch):
    import builtins
    import errno

    from medfeat.errors import ResourceError

    real_open = builtins.open

    class FullDisk:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

    def full_open(path, mode="r", *args, **kwargs):
        fh = real_open(path, mode, *args, **kwargs)
        return FullDisk(fh) if "w" in mode and ".tmp" in str(path) else fh

    monkeypatch.setattr(builtins, "open", full_open)
    with pytest.raises(ResourceError, match="disk is full") as info:
        atomic_write_json(tmp_path / "metrics.json", {"a": 1})
    assert "Traceback" not in str(info.value) and "--out" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_short_write_is_caught_before_the_rename(tmp_path, monkeypatch):
    """ITK reports a short write on a full disk without raising: the truncated file must not be
    renamed into place."""
    import SimpleITK as sitk

    from medfeat.errors import ResourceError
    from medfeat.geometry import Grid, Image
    from medfeat.io.images import write_image

    image = Image(
        np.random.default_rng(0).random((8, 9, 10)).astype(np.float32),
        Grid.from_shape((8, 9, 10), 1.5),
    )
    real_write = sitk.WriteImage

    def short_write(img, path, *args):
        real_write(img, path, *args)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])

    monkeypatch.setattr(sitk, "WriteImage", short_write)
    for name in ("img.nii.gz", "img.nii"):
        with pytest.raises(ResourceError, match="cut short"):
            write_image(image, tmp_path / name)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(sitk, "WriteImage", real_write)
    write_image(image, tmp_path / "img.nii.gz")  # a complete file passes the check
    write_image(image, tmp_path / "img.nii")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.nii", "img.nii.gz"]


def test_short_byte_writes_and_writer_messages_about_full_disks(tmp_path, monkeypatch):
    from medfeat.errors import ResourceError

    with pytest.raises(ResourceError, match="disk is full"), atomic_path(tmp_path / "x.nii.gz"):
        raise RuntimeError("ITK ERROR: ... No space left on device")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ResourceError, match="empty"), atomic_path(tmp_path / "y.bin") as tmp:
        tmp.write_bytes(b"")
    assert list(tmp_path.iterdir()) == []


def test_protected_inputs_refuse_every_atomic_write_within_a_run(tmp_path):
    from medfeat.io.atomic import protecting

    victim = tmp_path / "case" / "metrics.json"
    victim.parent.mkdir()
    victim.write_text("input")
    with protecting([victim]), pytest.raises(InputFileError, match="input of this run"):
        atomic_write_json(victim, {"a": 1})
    assert victim.read_text() == "input"
    atomic_write_json(victim, {"a": 1})  # outside the run: allowed


def test_stale_temporaries_are_removed(tmp_path):
    from medfeat.io.atomic import remove_stale_temporaries

    (tmp_path / "case").mkdir()
    stale = [
        tmp_path / ".metrics.json.abcd1234.tmp.json",
        tmp_path / "case" / ".field.nii.gz.x_y1z2w3.tmp.nii.gz",
    ]
    for p in stale:
        p.write_text("half")
    (tmp_path / "case" / ".img.mhd.k3j4h5g6").mkdir()
    keep = [tmp_path / "metrics.json", tmp_path / "case" / ".hidden-user-file", tmp_path / "a.tmp"]
    for p in keep:
        p.write_text("keep")
    removed = remove_stale_temporaries(tmp_path)
    assert len(removed) == 3 and all(p.exists() for p in keep)
    assert not any(p.exists() for p in stale)


def _image(shape=(8, 9, 10)):
    from medfeat.geometry import Grid, Image

    rng = np.random.default_rng(1)
    return Image(rng.random(shape).astype(np.float32), Grid.from_shape(shape, 1.5))


def test_nifti_gz_is_compressed_by_medfeat_in_one_checked_pass(tmp_path):
    """ITK writes the plain NIfTI, medfeat gzips it: the same voxels and header bytes as ITK's
    own file, the same bytes on every write, the level honoured, the checksum remembered."""
    import gzip
    import hashlib

    import SimpleITK as sitk

    from medfeat.io.checksum import known_sha256, remembering_checksums
    from medfeat.io.images import write_image
    from medfeat.io.sitk_bridge import image_to_sitk

    image = _image()
    sitk.WriteImage(image_to_sitk(image), str(tmp_path / "itk.nii"))
    with remembering_checksums():
        a = write_image(image, tmp_path / "a.nii.gz")
        digest = hashlib.sha256(a.read_bytes()).hexdigest()
        assert known_sha256(a) == digest  # provenance need not read the file again
    assert gzip.decompress(a.read_bytes()) == (tmp_path / "itk.nii").read_bytes()
    b = write_image(image, tmp_path / "b.nii.gz")
    assert a.read_bytes() == b.read_bytes()  # no time stamp or temporary name inside
    labels = type(image)(np.zeros(image.grid.shape, np.uint8), image.grid)
    stored = write_image(labels, tmp_path / "s.nii.gz", compression_level=0)
    packed = write_image(labels, tmp_path / "p.nii.gz")
    assert stored.stat().st_size > 10 * packed.stat().st_size
    smooth = type(image)(np.round(image.numpy() * 4) / 4, image.grid)  # compressible floats
    fast = write_image(smooth, tmp_path / "fast.nii.gz").stat().st_size
    plain = write_image(smooth, tmp_path / "plain.nii.gz", compression_level=0).stat().st_size
    best = write_image(smooth, tmp_path / "best.nii.gz", compression_level=9).stat().st_size
    assert best <= fast < 0.5 * plain
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["itk.nii", "a.nii.gz", "b.nii.gz", "s.nii.gz", "p.nii.gz"]
        + ["fast.nii.gz", "plain.nii.gz", "best.nii.gz"]
    )


def test_a_full_disk_while_compressing_leaves_nothing(tmp_path, monkeypatch):
    import errno

    from medfeat.errors import ResourceError
    from medfeat.io import atomic
    from medfeat.io.images import write_image

    def no_space(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "_gzip_file", no_space)
    with pytest.raises(ResourceError, match="disk is full"):
        write_image(_image(), tmp_path / "img.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_gzip_path_refuses_other_names(tmp_path):
    from medfeat.io.atomic import atomic_gzip_path

    with pytest.raises(InputFileError, match="level"), atomic_gzip_path(tmp_path / "x.nii"):
        pass
