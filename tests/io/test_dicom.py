"""DICOM series folders: one complete, evenly sliced series, or a message naming what is wrong."""

import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from medfeat.errors import InputFileError, ResourceError
from medfeat.io import read_image
from medfeat.io.checksum import sha256_file
from medfeat.io.dicom import SliceInfo, check_slice_positions

STUDY = "1.2.826.0.1.3680043.2.1125.1"
AXIAL = "1.2.826.0.1.3680043.2.1125.1001"


def write_series(folder, uid, description, n_slices, thickness=2.5, origin_z=0.0, skip=()):
    """Write a synthetic CT series, one file per slice; ``skip``: slice indices left out."""
    folder.mkdir(exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z in range(n_slices):
        if z in skip:
            continue
        sl = sitk.GetImageFromArray((np.arange(12 * 10).reshape(1, 12, 10) + z).astype(np.int16))
        sl.SetSpacing((0.8, 0.8, thickness))
        sl.SetOrigin((-5.0, 7.0, origin_z + z * thickness))
        tags = {
            "0008|0060": "CT",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{uid}.{z + 1}",
            "0020|000d": STUDY,
            "0020|000e": uid,
            "0008|103e": description,
            "0020|0013": str(z + 1),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0020|0032": f"-5\\7\\{origin_z + z * thickness}",
            "0028|0030": "0.8\\0.8",
        }
        for k, v in tags.items():
            sl.SetMetaData(k, v)
        writer.SetFileName(str(folder / f"{uid[-4:]}_{z:03d}.dcm"))
        writer.Execute(sl)
    return folder


def test_dicom_series_folder(tmp_path):
    write_series(tmp_path / "dcm", AXIAL, "axial", 5)
    img = read_image(tmp_path / "dcm")
    assert img.grid.shape == (5, 12, 10)
    np.testing.assert_allclose(img.grid.spacing, (0.8, 0.8, 2.5), atol=1e-6)
    np.testing.assert_allclose(img.grid.origin, (-5, 7, 0), atol=1e-6)
    assert img.meta["format"] == "dicom" and img.meta["num_files"] == 5
    assert img.meta["slice_step_mm"] == pytest.approx(2.5)
    assert img.meta["sha256"] == sha256_file(tmp_path / "dcm")


def test_missing_slice_is_refused_naming_the_gap(tmp_path):
    # 32 slices at 5 mm with slice 17 (at 85 mm) gone: ITK would read 31 slices at 5.17 mm
    write_series(tmp_path / "dcm", AXIAL, "axial", 32, thickness=5.0, skip=(17,))
    with pytest.raises(InputFileError, match="not evenly spaced") as err:
        read_image(tmp_path / "dcm")
    msg = str(err.value)
    assert "80 mm (1001_016.dcm)" in msg and "90 mm (1001_018.dcm)" in msg
    assert "about 1 slice(s) missing" in msg and "5.167 mm" in msg
    assert "Restore the missing slice files" in err.value.remedy


def test_uneven_spacing_and_duplicate_positions_are_refused():
    def slices(heights):
        return [
            SliceInfo(f"s{i}.dcm", (0.0, 0.0, h), (1, 0, 0, 0, 1, 0), 4, 4)
            for i, h in enumerate(heights)
        ]

    assert check_slice_positions(slices([0, 2, 4, 6]), "series") == pytest.approx(2.0)
    # rounded positions (0.625 mm slices written to 0.1 mm) stay within the tolerance
    assert check_slice_positions(slices([0, 0.6, 1.3, 1.9, 2.5]), "series") == pytest.approx(0.625)
    with pytest.raises(InputFileError, match="uneven step"):
        check_slice_positions(slices([0, 2, 4, 7, 10, 13]), "series")
    with pytest.raises(InputFileError, match="share one position.*s1.dcm and s2.dcm"):
        check_slice_positions(slices([0, 2, 2, 4]), "series")
    tilted = slices([0, 2, 4])
    tilted[1] = SliceInfo("t.dcm", (0.0, 0.0, 2.0), (1, 0, 0, 0, 0.8, 0.6), 4, 4)
    with pytest.raises(InputFileError, match="different orientations"):
        check_slice_positions(tilted, "series")


def test_truncated_slice_is_refused_naming_the_file(tmp_path):
    folder = write_series(tmp_path / "dcm", AXIAL, "axial", 6)
    victim = folder / "1001_003.dcm"
    victim.write_bytes(victim.read_bytes()[:300])
    with pytest.raises(InputFileError, match="cannot be parsed") as err:
        read_image(folder)
    assert "1001_003.dcm (300 bytes)" in str(err.value) and "again" in err.value.remedy


def test_folder_with_two_series_names_a_real_remedy(tmp_path):
    write_series(tmp_path / "dcm", AXIAL, "axial", 4)
    write_series(tmp_path / "dcm", "1.2.826.0.1.3680043.2.1125.2002", "bone", 3, origin_z=100.0)
    with pytest.raises(InputFileError, match="2 DICOM series") as err:
        read_image(tmp_path / "dcm")
    msg = str(err.value)
    assert "1001" in msg and "2002" in msg and "axial" in msg and "bone" in msg
    assert "4 slices" in msg and "3 slices" in msg and "e.g. 1001_000.dcm" in msg
    # the remedy is something a pipeline user can do: no Python-only argument
    assert "series_uid" not in msg and "folder of its own" in err.value.remedy
    img = read_image(tmp_path / "dcm", series_uid="1.2.826.0.1.3680043.2.1125.2002")  # Python API
    assert img.grid.shape[0] == 3 and img.meta["series_description"] == "bone"
    with pytest.raises(InputFileError, match="not in"):
        read_image(tmp_path / "dcm", series_uid="9.9")


def test_folder_without_dicom(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputFileError, match="no readable DICOM"):
        read_image(tmp_path)


def test_series_size_is_checked_before_decoding(tmp_path, monkeypatch):
    write_series(tmp_path / "dcm", AXIAL, "axial", 5)
    monkeypatch.setenv("MEDFEAT_MAX_VOXELS", "500")
    monkeypatch.setattr(sitk.ImageSeriesReader, "Execute", lambda self: pytest.fail("pixels read"))
    with pytest.raises(ResourceError, match="10x12x5 image: 600 voxels"):
        read_image(tmp_path / "dcm")


# ----------------------------------------------------------------------------------- real data
@pytest.fixture
def real_series(shared_data, tmp_path):
    src = shared_data / "abdomen-ct" / "example_ct_dicom"
    if not src.is_dir():
        pytest.skip(f"real data not available: {src} does not exist")
    dst = tmp_path / "ct"
    shutil.copytree(src, dst)
    for p in dst.iterdir():
        p.chmod(0o644)
    return dst


@pytest.mark.realdata
def test_abdomen_ct_dicom_series(real_series):
    img = read_image(real_series)
    assert img.grid.shape == (20, 512, 512)
    np.testing.assert_allclose(img.grid.spacing[:2], 0.98, atol=0.01)
    assert img.grid.spacing[2] == pytest.approx(2.0, abs=0.05)
    assert img.meta["format"] == "dicom" and img.meta["num_files"] == 20
    assert len(img.meta["sha256"]) == 64


@pytest.mark.realdata
def test_abdomen_ct_dicom_series_with_a_lost_or_truncated_slice(real_series):
    files = sorted(real_series.iterdir())  # names follow the slice order of this series
    third = files[10]
    saved = third.read_bytes()
    third.unlink()  # ITK alone reads 19 slices at 2.11 mm
    with pytest.raises(InputFileError, match="about 1 slice\\(s\\) missing") as err:
        read_image(real_series)
    assert files[9].name in str(err.value) and files[11].name in str(err.value)
    third.write_bytes(saved[: len(saved) // 2])
    with pytest.raises(InputFileError, match="cannot be parsed") as err:
        read_image(real_series)
    assert third.name in str(err.value)
