"""One streamed pass over an input: checksum, NIfTI completeness and NaN/Inf voxels as stored."""

from __future__ import annotations

import hashlib

import nibabel as nib
import numpy as np
import pytest

from medfeat.errors import InputFileError
from medfeat.io import checksum, integrity
from medfeat.io.integrity import hash_and_check


def nifti(path, data, version=1, endian="<"):
    cls = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    header = (nib.Nifti1Header if version == 1 else nib.Nifti2Header)(endianness=endian)
    nib.save(cls(data, np.eye(4), header), str(path))
    return path


@pytest.fixture(params=[".nii", ".nii.gz"])
def suffix(request):
    return request.param


@pytest.mark.parametrize(("version", "endian"), [(1, "<"), (1, ">"), (2, "<"), (2, ">")])
def test_counts_nan_and_inf_voxels_as_stored(tmp_path, suffix, version, endian, monkeypatch):
    monkeypatch.setattr(integrity, "_CHUNK", 37)  # voxels split over reads and inflated pieces
    monkeypatch.setattr(integrity, "_MAX_INFLATED", 53)
    data = np.ones((5, 6, 7), np.float64)
    data[1, 2, 3], data[4, 5, 6], data[0, 0, 0] = np.nan, np.inf, -np.inf
    path = nifti(tmp_path / f"img{suffix}", data, version, endian)
    scan = hash_and_check(path)
    assert (scan.voxels, scan.nonfinite_voxels) == (210, 3)
    assert scan.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_finite_and_integer_images_have_no_bad_voxels(tmp_path, suffix):
    finite = nifti(tmp_path / f"f{suffix}", np.full((4, 5, 6), 1e30, np.float32))
    assert hash_and_check(finite).nonfinite_voxels == 0
    ints = nifti(tmp_path / f"i{suffix}", np.arange(120, dtype=np.int16).reshape(4, 5, 6))
    assert hash_and_check(ints).nonfinite_voxels == 0


def test_other_files_are_only_hashed(tmp_path):
    path = tmp_path / "img.mha"
    path.write_bytes(b"not looked at" * 100)
    scan = hash_and_check(path)
    assert scan == integrity.FileScan(hashlib.sha256(path.read_bytes()).hexdigest())


def test_truncated_nifti_is_refused(tmp_path, suffix):
    path = nifti(tmp_path / f"img{suffix}", np.ones((8, 8, 8), np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    with pytest.raises(InputFileError, match="truncated") as err:
        hash_and_check(path)
    assert "copy or export the file again" in err.value.remedy


def test_checksum_of_the_pass_is_reused_within_a_run(tmp_path, monkeypatch):
    path = nifti(tmp_path / "img.nii", np.ones((4, 4, 4), np.float32))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    hash_and_check(path)
    assert checksum.known_sha256(path) is None  # outside a run nothing is kept
    with checksum.remembering_checksums():
        hash_and_check(path)
        monkeypatch.setattr("builtins.open", lambda *a, **k: pytest.fail("read again"))
        assert checksum.sha256_file(path) == sha
        monkeypatch.undo()
        nifti(path, np.zeros((5, 4, 4), np.float32))  # a changed file is hashed again
        assert checksum.known_sha256(path) is None
        assert checksum.sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert checksum.known_sha256(path) is None
