import numpy as np
import pytest
import SimpleITK as sitk

from medfeat.errors import DataError, GeometryError, InputFileError
from medfeat.geometry import Grid, Image
from medfeat.io import read_image, write_image
from medfeat.io.checksum import sha256_file


def assert_same_geometry(a: Grid, b: Grid, atol: float) -> None:
    assert a.shape == b.shape
    np.testing.assert_allclose(a.spacing, b.spacing, atol=atol)
    np.testing.assert_allclose(a.origin, b.origin, atol=atol)
    np.testing.assert_allclose(a.direction, b.direction, atol=atol)


# NIfTI stores geometry as float32; the other formats keep (near) double precision.
@pytest.mark.parametrize(
    ("suffix", "atol"),
    [(".nii.gz", 1e-5), (".nii", 1e-5), (".nrrd", 1e-9), (".mha", 1e-9), (".mhd", 1e-9)],
)
def test_round_trip_keeps_geometry_and_voxels(tmp_path, image, suffix, atol):
    path = write_image(image, tmp_path / f"img{suffix}")
    back = read_image(path)
    assert_same_geometry(back.grid, image.grid, atol)
    np.testing.assert_array_equal(back.numpy(), image.numpy())
    assert back.meta["path"] == str(path)
    assert back.meta["pixel_type"] == "32-bit float"
    assert back.meta["sha256"] == sha256_file(path)
    # the world position of a voxel is the same after the round trip
    np.testing.assert_allclose(
        back.grid.index_to_world([[3, 2, 1]]), image.grid.index_to_world([[3, 2, 1]]), atol=1e-4
    )
    leftovers = {p.name for p in tmp_path.iterdir()} - {f"img{suffix}", "img.raw", "img.zraw"}
    assert not leftovers


def test_round_trip_matches_simpleitk_indexing(tmp_path, image):
    path = write_image(image, tmp_path / "img.nrrd")
    ref = sitk.ReadImage(str(path))
    world = image.grid.index_to_world([[4.0, 7.0, 2.0]])[0]
    assert np.allclose(ref.TransformContinuousIndexToPhysicalPoint((4.0, 7.0, 2.0)), world)
    assert ref.GetPixel(4, 7, 2) == image.numpy()[2, 7, 4]


def test_multichannel_bool_and_2d(tmp_path, grid):
    rgb = Image(np.arange(3 * 6 * 9 * 11, dtype=np.uint8).reshape(3, *grid.shape), grid)
    back = read_image(write_image(rgb, tmp_path / "rgb.mha"))
    assert back.num_channels == 3
    np.testing.assert_array_equal(back.numpy(), rgb.numpy())
    mask = Image(np.zeros(grid.shape, bool), grid)
    assert read_image(write_image(mask, tmp_path / "m.nii.gz")).numpy().dtype == np.uint8
    g2 = Grid((5, 7), (0.5, 2.0), (1.0, -2.0), np.array([[0.0, -1.0], [1.0, 0.0]]))
    back2 = read_image(write_image(Image(np.ones(g2.shape, np.int16), g2), tmp_path / "two.nrrd"))
    assert_same_geometry(back2.grid, g2, 1e-9)


def test_reference_grid_is_written_and_checked(tmp_path, image, grid):
    seg = Image(np.ones(grid.shape, np.uint8), grid)
    assert read_image(write_image(seg, tmp_path / "seg.nrrd", reference=image)).grid.same_as(grid)
    other = Image(np.ones(grid.shape, np.uint8), Grid.from_shape(grid.shape, 1.0))
    with pytest.raises(GeometryError, match="resample_to_grid|Resample"):
        write_image(other, tmp_path / "bad.nrrd", reference=image)


def test_refuses_to_overwrite_inputs(tmp_path, image):
    src = write_image(image, tmp_path / "in.nii.gz")
    before = sha256_file(src)
    with pytest.raises(InputFileError, match="input of this run"):
        write_image(image, src, protect={src})
    assert sha256_file(src) == before


def test_failing_writer_leaves_no_file(tmp_path, image, monkeypatch):
    def boom(img, path, *args):
        with open(path, "wb") as fh:
            fh.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", boom)
    with pytest.raises(RuntimeError):
        write_image(image, tmp_path / "out.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_unsupported_output_extension(tmp_path, image):
    with pytest.raises(InputFileError, match="unsupported extension"):
        write_image(image, tmp_path / "out.png")


# ----------------------------------------------------------------------------------- bad inputs
def test_missing_file_names_similar_files(tmp_path, image):
    write_image(image, tmp_path / "fixed.nii.gz")
    with pytest.raises(InputFileError, match="does not exist") as err:
        read_image(tmp_path / "fixd.nii.gz")
    assert "fixed.nii.gz" in str(err.value) and err.value.remedy


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_truncated_files_are_rejected(tmp_path, image, suffix):
    path = write_image(image, tmp_path / f"img{suffix}", compress=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputFileError, match="truncated|Could not read") as err:
        read_image(path)
    assert err.value.remedy


def test_corrupt_gzip_and_garbage(tmp_path, image):
    path = write_image(image, tmp_path / "img.nii.gz")
    data = bytearray(path.read_bytes())
    data[200:260] = b"\xff" * 60
    path.write_bytes(bytes(data))
    with pytest.raises(InputFileError, match="corrupt|truncated|Could not read"):
        read_image(path)
    (tmp_path / "junk.nii").write_bytes(b"not an image" * 50)
    with pytest.raises(InputFileError, match="Could not read"):
        read_image(tmp_path / "junk.nii")


def test_4d_and_1d_images_are_rejected(tmp_path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 2), np.float32), np.eye(4)), tmp_path / "t.nii.gz")
    with pytest.raises(DataError, match="4D"):
        read_image(tmp_path / "t.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((7,), np.float32), np.eye(4)), tmp_path / "line.nii.gz")
    with pytest.raises((DataError, InputFileError), match="1"):
        read_image(tmp_path / "line.nii.gz")


def test_non_finite_spacing_is_rejected(tmp_path, image):
    path = write_image(image, tmp_path / "img.mha", compress=False)
    data = path.read_bytes()
    start = data.index(b"ElementSpacing")
    end = data.index(b"\n", start)
    path.write_bytes(data[:start] + b"ElementSpacing = nan 1 1" + data[end:])
    with pytest.raises((DataError, InputFileError), match="spacing"):  # ITK itself refuses this one
        read_image(path)


def test_non_finite_spacing_reaching_medfeat_is_a_data_error(tmp_path):
    from medfeat.io.images import _to_image

    img = sitk.Image([3, 4, 5], sitk.sitkUInt8)
    img.SetSpacing((float("inf"), 1.0, 1.0))
    with pytest.raises(DataError, match="spacing .*inf"):
        _to_image(img, tmp_path / "x.nii", {})


# ----------------------------------------------------------------------------------- DICOM
def _write_series(
    folder, uid, description, n_slices, spacing=(0.8, 0.8), thickness=2.5, origin_z=0.0
):
    folder.mkdir(exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z in range(n_slices):
        sl = sitk.GetImageFromArray((np.arange(12 * 10).reshape(1, 12, 10) + z).astype(np.int16))
        sl.SetSpacing((*spacing, thickness))
        sl.SetOrigin((-5.0, 7.0, origin_z + z * thickness))
        tags = {
            "0008|0060": "CT",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{uid}.{z + 1}",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000e": uid,
            "0008|103e": description,
            "0020|0013": str(z + 1),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0020|0032": f"-5\\7\\{origin_z + z * thickness}",
            "0028|0030": f"{spacing[1]}\\{spacing[0]}",
        }
        for k, v in tags.items():
            sl.SetMetaData(k, v)
        writer.SetFileName(str(folder / f"{uid[-4:]}_{z:03d}.dcm"))
        writer.Execute(sl)


def test_dicom_series_folder(tmp_path):
    _write_series(tmp_path / "dcm", "1.2.826.0.1.3680043.2.1125.1001", "axial", 5)
    img = read_image(tmp_path / "dcm")
    assert img.grid.shape == (5, 12, 10)
    np.testing.assert_allclose(img.grid.spacing, (0.8, 0.8, 2.5), atol=1e-6)
    np.testing.assert_allclose(img.grid.origin, (-5, 7, 0), atol=1e-6)
    assert img.meta["format"] == "dicom" and img.meta["num_files"] == 5
    assert img.meta["sha256"] == sha256_file(tmp_path / "dcm")


def test_folder_with_two_series_lists_them(tmp_path):
    _write_series(tmp_path / "dcm", "1.2.826.0.1.3680043.2.1125.1001", "axial", 4)
    _write_series(tmp_path / "dcm", "1.2.826.0.1.3680043.2.1125.2002", "bone", 3, origin_z=100.0)
    with pytest.raises(InputFileError, match="2 DICOM series") as err:
        read_image(tmp_path / "dcm")
    msg = str(err.value)
    assert (
        "1001" in msg and "2002" in msg and "axial" in msg and "bone" in msg and "series_uid" in msg
    )
    assert "4 slices" in msg and "3 slices" in msg
    img = read_image(tmp_path / "dcm", series_uid="1.2.826.0.1.3680043.2.1125.2002")
    assert img.grid.shape[0] == 3 and img.meta["series_description"] == "bone"
    with pytest.raises(InputFileError, match="not in"):
        read_image(tmp_path / "dcm", series_uid="9.9")


def test_folder_without_dicom(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputFileError, match="no readable DICOM"):
        read_image(tmp_path)


@pytest.mark.realdata
def test_abdomen_ct_dicom_series(shared_data):
    img = read_image(shared_data / "abdomen-ct" / "example_ct_dicom")
    assert img.grid.shape == (20, 512, 512)
    np.testing.assert_allclose(img.grid.spacing[:2], 0.98, atol=0.01)
    assert img.grid.spacing[2] == pytest.approx(2.0, abs=0.05)
    assert img.meta["format"] == "dicom" and img.meta["num_files"] == 20
    assert len(img.meta["sha256"]) == 64
