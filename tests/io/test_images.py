import numpy as np
import pytest
import SimpleITK as sitk

from medfeat.errors import ConfigError, DataError, GeometryError, InputFileError, ResourceError
from medfeat.geometry import Grid, Image
from medfeat.io import read_image, write_image
from medfeat.io.checksum import sha256_file
from medfeat.io.image_checks import check_intensity_image


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


# ----------------------------------------------------------------------------------- header checks
def sparse_nifti(path, shape, dtype=np.float32):
    """A NIfTI file whose header describes ``shape`` but whose voxels take no disk space."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_sform(np.eye(4), code=1)
    with open(path, "wb") as fh:
        fh.write(header.binaryblock + b"\0" * 4)
        fh.truncate(352 + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
    return path


def test_huge_image_is_refused_from_its_header(tmp_path, monkeypatch):
    path = sparse_nifti(tmp_path / "huge.nii", (1024, 1024, 1024))
    monkeypatch.setattr(sitk, "ReadImage", lambda *a: pytest.fail("pixels were read"))
    from medfeat.io import images

    monkeypatch.setattr(images, "hash_and_check", lambda *a: pytest.fail("file was scanned"))
    with pytest.raises(ResourceError, match="1024x1024x1024 image: 1,073,741,824 voxels") as err:
        read_image(path)
    assert "4.0 GiB as stored" in str(err.value)
    assert "MEDFEAT_MAX_VOXELS" in err.value.remedy and "downsample" in err.value.remedy


def test_voxel_limit_comes_from_the_environment(tmp_path, monkeypatch, image):
    path = write_image(image, tmp_path / "img.nii.gz")
    monkeypatch.setenv("MEDFEAT_MAX_VOXELS", "593")  # the image has 594
    with pytest.raises(ResourceError, match="11x9x6 image: 594 voxels"):
        read_image(path)
    monkeypatch.setenv("MEDFEAT_MAX_VOXELS", "594")
    assert read_image(path).grid.shape == (6, 9, 11)
    monkeypatch.setenv("MEDFEAT_MAX_VOXELS", "lots")
    with pytest.raises(ConfigError, match="MEDFEAT_MAX_VOXELS='lots'"):
        read_image(path)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_complex_pixels_are_refused(tmp_path, suffix):
    data = (np.arange(6 * 7 * 8).reshape(6, 7, 8) * (1 + 2j)).astype(np.complex64)
    path = tmp_path / f"c{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(data), str(path))
    if (
        suffix == ".mha"
    ):  # MetaImage stores complex pixels as two channels: refused as a vector image
        img = read_image(path)
        assert img.num_channels == 2
        with pytest.raises(DataError, match="2 values per voxel"):
            check_intensity_image(img, "moving image")
        return
    with pytest.raises(DataError, match="complex pixels") as err:
        read_image(path)
    assert "magnitude" in err.value.remedy


def test_intensity_images_must_be_scalar_and_large_enough(tmp_path, grid, image):
    rgb = read_image(
        write_image(Image(np.ones((3, *grid.shape), np.uint8), grid), tmp_path / "v.mha")
    )
    with pytest.raises(DataError, match="fixed image .* 3 values per voxel") as err:
        check_intensity_image(rgb, "fixed image")
    assert "scalar image" in err.value.remedy
    for shape, axes in [((2, 2, 2), "i=2, j=2, k=2"), ((1, 32, 32), "k=1")]:
        tiny = Image(np.random.default_rng(0).random(shape), Grid.from_shape(shape))
        with pytest.raises(DataError, match=f"too few along {axes}.*at least 8 voxels"):
            check_intensity_image(tiny, "moving image")
    with pytest.raises(DataError, match="too few along k=6"):
        check_intensity_image(image, "fixed image")
    check_intensity_image(image, "fixed image", min_size_vox=6)
