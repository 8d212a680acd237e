import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medfeat.errors import InputFileError
from medfeat.geometry import DisplacementField
from medfeat.io import read_displacement_field, write_displacement_field


@pytest.fixture
def field(grid):
    rng = np.random.default_rng(1)
    return DisplacementField(rng.normal(scale=2.0, size=(3, *grid.shape)), grid)


def interior_points(grid, n=50, seed=2):
    rng = np.random.default_rng(seed)
    idx = rng.uniform(0.5, np.asarray(grid.size_ijk) - 1.5, size=(n, 3))
    return grid.index_to_world(idx)


def test_itk_field_maps_points_like_simpleitk(tmp_path, field):
    path = write_displacement_field(field, tmp_path / "u.nii.gz")
    assert nib.load(path).header.get_intent()[0] == "vector"
    transform = sitk.DisplacementFieldTransform(sitk.ReadImage(str(path), sitk.sitkVectorFloat64))
    pts = interior_points(field.grid)
    by_sitk = np.array([transform.TransformPoint(tuple(p)) for p in pts])
    np.testing.assert_allclose(by_sitk, field.transform_points(pts), atol=1e-4)
    sidecar = json.loads((tmp_path / "u.json").read_text())
    assert sidecar["convention"] == "itk" and sidecar["units"] == "mm"
    assert sidecar["direction"] == "fixed_to_moving"


def test_itk_round_trip(tmp_path, field):
    back = read_displacement_field(write_displacement_field(field, tmp_path / "u.nii.gz"))
    assert back.grid.same_as(field.grid)
    np.testing.assert_allclose(back.numpy(), field.numpy())
    assert back.mapping == "fixed_to_moving"


def test_learn2reg_layout_and_round_trip(tmp_path, field, grid):
    path = write_displacement_field(field, tmp_path / "disp.nii.gz", convention="learn2reg")
    arr = nib.load(path).get_fdata()
    assert arr.shape == (*grid.size_ijk, 3)  # (H, W, D, 3) in nibabel (i, j, k) order
    # voxel-unit displacement along (i, j, k) at voxel (i, j, k) = (4, 3, 2)
    vox = field.to_array_voxels()[:, 2, 3, 4][::-1]
    np.testing.assert_allclose(arr[4, 3, 2], vox, rtol=1e-5, atol=1e-5)
    # a fixed voxel maps to the moving voxel fixed + disp (same grid), as Learn2Reg's TRE assumes
    fixed_idx = np.array([[4.0, 3.0, 2.0]])
    moved_world = field.transform_points(grid.index_to_world(fixed_idx))
    np.testing.assert_allclose(
        grid.world_to_index(moved_world)[0], fixed_idx[0] + arr[4, 3, 2], atol=1e-4
    )
    assert json.loads((tmp_path / "disp.json").read_text())["units"] == "voxel"
    back = read_displacement_field(path)
    assert back.grid.same_as(field.grid)
    np.testing.assert_allclose(back.numpy(), field.numpy(), atol=1e-4)


def test_bad_field_paths(tmp_path, field, image):
    with pytest.raises(InputFileError, match="NIfTI"):
        write_displacement_field(field, tmp_path / "u.mha")
    with pytest.raises(InputFileError, match="convention"):
        write_displacement_field(field, tmp_path / "u.nii.gz", convention="ants")
    with pytest.raises(InputFileError, match="does not exist"):
        read_displacement_field(tmp_path / "missing.nii.gz")
    from medfeat.io import write_image

    write_image(image, tmp_path / "scalar.nii.gz")
    with pytest.raises(InputFileError, match="component"):
        read_displacement_field(tmp_path / "scalar.nii.gz")


def test_itk_field_is_written_as_the_float32_rounding_of_its_values(tmp_path, field):
    data = field.numpy()
    path = write_displacement_field(field, tmp_path / "f.nii.gz")
    img = sitk.ReadImage(str(path))
    assert img.GetPixelID() == sitk.sitkVectorFloat32
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(img), np.moveaxis(data.astype(np.float32), 0, -1)
    )
    back = read_displacement_field(path)
    assert back.grid.same_as(field.grid)
    np.testing.assert_array_equal(back.numpy(), data.astype(np.float32).astype(np.float64))
