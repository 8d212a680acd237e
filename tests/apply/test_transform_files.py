"""Reading ITK/ANTs/greedy transform files as point maps, in the order ITK applies them."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from medfeat.apply import TransformSpec, apply_transforms, load_chain
from medfeat.errors import GeometryError, InputFileError
from medfeat.geometry import DisplacementField
from medfeat.io.sitk_bridge import field_to_sitk, image_to_sitk, reference_image
from medfeat.io.transform_files import (
    AffineMap,
    ItkTransform,
    ras_lps_matrix,
    read_transform,
    write_affine,
)

POINTS = np.array([[1.0, -2.0, 3.5], [-10.0, 15.0, 7.0], [20.0, 4.0, -9.0]])


def affine_sitk(helpers) -> sitk.AffineTransform:
    t = sitk.AffineTransform(3)
    m = helpers.rotation(0.1, -0.2, 0.3) @ np.diag([1.1, 0.95, 1.05])
    t.SetMatrix(tuple(m.ravel()))
    t.SetTranslation((3.0, -2.0, 1.5))
    t.SetCenter((5.0, 6.0, -4.0))
    return t


def itk_points(t, pts):
    return np.array([t.TransformPoint(tuple(p)) for p in pts])


@pytest.mark.parametrize("suffix", [".tfm", ".txt", ".h5", ".mat"])
def test_sitk_affine_round_trips(suffix, tmp_path, helpers, fixed_grid, moving_grid):
    t = affine_sitk(helpers)
    path = tmp_path / f"affine{suffix}"
    sitk.WriteTransform(t, str(path))
    (part,) = read_transform(path)
    assert isinstance(part, AffineMap) and part.mapping is None
    np.testing.assert_allclose(part.transform_points(POINTS), itk_points(t, POINTS), atol=1e-9)
    # medfeat writes it back; SimpleITK reads the same map
    again = write_affine(part.matrix, tmp_path / "again.tfm")
    np.testing.assert_allclose(
        itk_points(sitk.ReadTransform(str(again)), POINTS), itk_points(t, POINTS), atol=1e-9
    )
    # resampling through it equals SimpleITK's
    moving = helpers.blob_image(moving_grid, np.array([-5.0, 20.0, 2.0]), 7.0)
    got = apply_transforms([path], image=moving, reference=fixed_grid)
    expected = sitk.Resample(image_to_sitk(moving), reference_image(fixed_grid), t, sitk.sitkLinear)
    np.testing.assert_allclose(got.numpy(), sitk.GetArrayFromImage(expected), atol=1e-6)


def test_euler_and_inverse_affine(tmp_path):
    t = sitk.Euler3DTransform((1.0, 2.0, 3.0), 0.2, -0.1, 0.4, (5.0, -3.0, 2.0))
    sitk.WriteTransform(t, str(tmp_path / "rigid.txt"))
    chain = load_chain([tmp_path / "rigid.txt", TransformSpec(tmp_path / "rigid.txt", invert=True)])
    np.testing.assert_allclose(chain.transform_points(POINTS), POINTS, atol=1e-9)
    inv = load_chain([TransformSpec(tmp_path / "rigid.txt", invert=True)])
    np.testing.assert_allclose(inv.transform_points(itk_points(t, POINTS)), POINTS, atol=1e-9)


def test_composite_h5_is_flattened_in_point_order(tmp_path, helpers, fixed_grid):
    field = helpers.smooth_field(fixed_grid, 2.0)
    dft = sitk.DisplacementFieldTransform(field_to_sitk(field.numpy(), fixed_grid))
    aff = affine_sitk(helpers)
    composite = sitk.CompositeTransform([aff, dft])  # ITK: dft first, then the affine
    sitk.WriteTransform(composite, str(tmp_path / "c.h5"))
    parts = read_transform(tmp_path / "c.h5")
    assert [type(p) for p in parts] == [DisplacementField, AffineMap]
    inside = fixed_grid.array_index_to_world(np.array([[5.0, 6.0, 7.0], [8.0, 10.0, 12.0]]))
    chain = load_chain([tmp_path / "c.h5"])
    np.testing.assert_allclose(
        chain.transform_points(inside), itk_points(composite, inside), atol=1e-6
    )
    # as a written field, the whole chain is what SimpleITK's composite gives
    from medfeat.apply import compose_field

    whole = compose_field(chain, fixed_grid)
    expected = sitk.TransformToDisplacementField(
        composite, sitk.sitkVectorFloat64, fixed_grid.size_ijk, fixed_grid.origin,
        fixed_grid.spacing, tuple(fixed_grid.direction.ravel()),
    )  # fmt: skip
    exp = np.moveaxis(sitk.GetArrayFromImage(expected), -1, 0)
    np.testing.assert_allclose(
        whole.numpy()[:, 1:-1, 1:-1, 1:-1], exp[:, 1:-1, 1:-1, 1:-1], atol=1e-6
    )


def test_greedy_text_matrix_is_ras(tmp_path):
    ras = np.array([[1.1, 0, 0, 2.0], [0, 1, 0.1, -3.0], [0, 0, 0.9, 4.0], [0, 0, 0, 1]])
    np.savetxt(tmp_path / "affine.mat", ras)
    (part,) = read_transform(tmp_path / "affine.mat")
    lps = ras_lps_matrix(ras)
    np.testing.assert_allclose(part.matrix, lps)
    flip = np.array([-1.0, -1.0, 1.0])
    expected = ((ras[:3, :3] @ (POINTS * flip).T).T + ras[:3, 3]) * flip
    np.testing.assert_allclose(part.transform_points(POINTS), expected)
    write_affine(part.matrix, tmp_path / "again.mat")
    np.testing.assert_allclose(np.loadtxt(tmp_path / "again.mat"), ras)


def test_foreign_field_has_no_stated_direction(tmp_path, helpers, fixed_grid):
    field = helpers.smooth_field(fixed_grid, 2.0)
    sitk.WriteImage(field_to_sitk(field.numpy(), fixed_grid), str(tmp_path / "ants1Warp.nii.gz"))
    (part,) = read_transform(tmp_path / "ants1Warp.nii.gz")
    assert part.meta["mapping_source"] == "assumed"
    np.testing.assert_allclose(part.numpy(), field.numpy())
    for mapping in ("fixed_to_moving", "moving_to_fixed"):  # taken the way the user states
        assert load_chain([tmp_path / "ants1Warp.nii.gz"], mapping).mapping == mapping


def test_bspline_transform_and_its_refused_inverse(tmp_path, fixed_grid):
    ref = reference_image(fixed_grid, sitk.sitkFloat32)
    bs = sitk.BSplineTransformInitializer(ref, (3, 3, 3))
    rng = np.random.default_rng(1)
    bs.SetParameters(tuple(rng.normal(0, 1.5, len(bs.GetParameters()))))
    sitk.WriteTransform(bs, str(tmp_path / "bspline.tfm"))
    (part,) = read_transform(tmp_path / "bspline.tfm")
    assert isinstance(part, ItkTransform)
    pts = fixed_grid.array_index_to_world(np.array([[5.0, 6.0, 7.0], [3.0, 9.0, 2.0]]))
    np.testing.assert_allclose(part.transform_points(pts), itk_points(bs, pts), atol=1e-9)
    with pytest.raises(GeometryError, match="--write-field"):
        load_chain([TransformSpec(tmp_path / "bspline.tfm", invert=True)])


def test_unreadable_transforms_are_clear(tmp_path):
    (tmp_path / "TransformParameters.0.txt").write_text('(Transform "BSplineTransform")\n')
    with pytest.raises(InputFileError, match="transformix"):
        read_transform(tmp_path / "TransformParameters.0.txt")
    (tmp_path / "junk.tfm").write_text("not a transform\n")
    with pytest.raises(InputFileError, match="could not be read as a transform"):
        read_transform(tmp_path / "junk.tfm")
    with pytest.raises(InputFileError, match="does not exist"):
        read_transform(tmp_path / "missing.h5")
