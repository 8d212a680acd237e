"""Applying medfeat fields: images equal SimpleITK's resampling, points equal the field's own mapping,
forward then inverse comes back, and the pull/push directions match the physical truth."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from medfeat.apply import TransformSpec, apply_transforms, load_chain
from medfeat.errors import GeometryError
from medfeat.geometry import DisplacementField, Grid, PointSet
from medfeat.io.fields import read_displacement_field, write_displacement_field
from medfeat.io.images import read_image, write_image
from medfeat.io.point_files import read_points, write_points


def sitk_field_transform(path):
    return sitk.DisplacementFieldTransform(sitk.ReadImage(str(path), sitk.sitkVectorFloat64))


def test_run_field_image_equals_simpleitk(phantom_run, apply_cli, helpers, tmp_path):
    case, root = phantom_run["case"], phantom_run["root"]
    out = tmp_path / "warped.nii.gz"
    assert apply_cli(["-t", str(case), "--image", str(root / "moving.nii.gz"), str(out)]) == 0
    moving = sitk.ReadImage(str(root / "moving.nii.gz"))
    field_path = case / "field_fixed_to_moving.nii.gz"
    ref = sitk.ReadImage(str(field_path))
    expected = sitk.Resample(
        moving, ref, sitk_field_transform(field_path), sitk.sitkLinear, 0.0, moving.GetPixelID()
    )
    got = sitk.ReadImage(str(out))
    assert got.GetSize() == ref.GetSize() and np.allclose(got.GetOrigin(), ref.GetOrigin())
    np.testing.assert_array_equal(sitk.GetArrayFromImage(got), sitk.GetArrayFromImage(expected))
    # and the run's own warped image
    np.testing.assert_allclose(helpers.read(out), helpers.read(case / "warped_moving.nii.gz"))


def test_rotated_grids_image_equals_simpleitk(fixed_grid, moving_grid, helpers, tmp_path):
    field = helpers.smooth_field(fixed_grid, 3.0)
    path = write_displacement_field(field, tmp_path / "f.nii.gz")
    moving = helpers.blob_image(moving_grid, np.array([-8.0, 20.0, 5.0]), 8.0)
    for interp, code in (("linear", sitk.sitkLinear), ("bspline", sitk.sitkBSpline),
                         ("nearest", sitk.sitkNearestNeighbor)):  # fmt: skip
        got = apply_transforms([path], image=moving, interpolation=interp)
        assert got.grid.same_as(fixed_grid)
        from medfeat.io.sitk_bridge import image_to_sitk, reference_image

        expected = sitk.Resample(
            image_to_sitk(moving), reference_image(fixed_grid), sitk_field_transform(path),
            code, 0.0, sitk.sitkFloat32,
        )  # fmt: skip
        np.testing.assert_allclose(got.numpy(), sitk.GetArrayFromImage(expected), atol=1e-6)


def test_landmarks_equal_field_transform_points(phantom_run, apply_cli, tmp_path):
    case, pair = phantom_run["case"], phantom_run["pair"]
    src = write_points(pair.fixed_points, tmp_path / "fixed.csv")
    out = tmp_path / "in_moving.csv"
    assert apply_cli(["-t", str(case), "--points", str(src), str(out)]) == 0
    field = read_displacement_field(case / "field_fixed_to_moving.nii.gz")
    expected = field.transform_points(pair.fixed_points.points)
    got = read_points(out).points
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    # and the landmarks the run itself wrote
    run_pts = read_points(case / "fixed_landmarks_in_moving_world_lps_mm.csv", space="lps").points
    np.testing.assert_allclose(got, run_pts, atol=1e-5, rtol=0)
    # SimpleITK maps the points inside the grid the same way
    t = sitk_field_transform(case / "field_fixed_to_moving.nii.gz")
    inside = field.grid.contains_world(pair.fixed_points.points, margin_vox=-1.0)
    assert inside.sum() > 10
    itk = np.array([t.TransformPoint(tuple(p)) for p in pair.fixed_points.points[inside]])
    np.testing.assert_allclose(got[inside], itk, atol=1e-5, rtol=0)


def test_forward_then_inverse_returns_points(phantom_run, apply_cli, tmp_path):
    case, pair = phantom_run["case"], phantom_run["pair"]
    src = write_points(pair.fixed_points, tmp_path / "fixed.fcsv")
    there, back = tmp_path / "there.fcsv", tmp_path / "back.csv"
    assert apply_cli(["-t", str(case), "--points", str(src), str(there)]) == 0
    assert (
        apply_cli(
            [
                "--mapping",
                "moving_to_fixed",
                "--invert",
                str(case / "field_fixed_to_moving.nii.gz"),
                "--points",
                str(there),
                str(back),
            ]
        )  # fmt: skip
        == 0
    )
    moved = read_points(there).points
    assert np.abs(moved - pair.fixed_points.points).max() > 1.0  # the map really moved them
    err = np.linalg.norm(read_points(back).points - pair.fixed_points.points, axis=1)
    assert err.max() < 0.1
    # the same with the inverse field the run wrote
    back2 = tmp_path / "back2.csv"
    assert (
        apply_cli(
            ["--mapping", "moving_to_fixed", "-t", str(case), "--points", str(there), str(back2)]
        )
        == 0
    )
    assert np.linalg.norm(read_points(back2).points - pair.fixed_points.points, axis=1).max() < 0.1


def test_invert_rotated_field_round_trip(fixed_grid, helpers):
    field = helpers.smooth_field(fixed_grid, 3.0)
    chain = load_chain([field, TransformSpec_inverse(field)], "fixed_to_moving")
    world = fixed_grid.array_index_to_world(np.array([[7.0, 9.0, 11.0], [4.0, 5.0, 6.0]]))
    np.testing.assert_allclose(chain.transform_points(world), world, atol=0.05)


def TransformSpec_inverse(field: DisplacementField) -> DisplacementField:
    from medfeat.apply import invert_field

    inverse = invert_field(field, 30)
    assert inverse.mapping == "moving_to_fixed"
    inverse.mapping = "fixed_to_moving"  # used here as the second half of a round trip
    return inverse


def test_directions_match_physics(tmp_path, apply_cli, helpers):
    """A feature at p in the fixed image sits at p + t in the moving image: the fixed_to_moving map
    is x -> x + t. Pulling the moving image through it puts the feature back at p on the fixed
    grid; pushing the fixed point p gives p + t; the moving_to_fixed map does the reverse."""
    grid = Grid.from_shape((30, 30, 30), 2.0, (-30.0, -30.0, -30.0))
    p, t = np.array([-4.0, 6.0, 2.0]), np.array([6.0, -4.0, 8.0])
    moving = helpers.blob_image(grid, p + t, 4.0)
    fixed = helpers.blob_image(grid, p, 4.0)
    field = DisplacementField(
        np.broadcast_to(t[:, None, None, None], (3, *grid.shape)).copy(), grid
    )
    fpath = write_displacement_field(field, tmp_path / "field_fixed_to_moving.nii.gz")
    write_image(moving, tmp_path / "moving.nii.gz")
    write_image(fixed, tmp_path / "fixed.nii.gz")
    write_points(PointSet(p[None]), tmp_path / "p.csv")

    out = tmp_path / "moving_on_fixed.nii.gz"
    assert apply_cli(["-t", str(fpath), "--image", str(tmp_path / "moving.nii.gz"), str(out)]) == 0
    warped = read_image(out)
    peak = grid.array_index_to_world(
        np.array(np.unravel_index(warped.numpy().argmax(), grid.shape))
    )
    np.testing.assert_allclose(peak[0], p, atol=1e-6)
    assert (
        apply_cli(["-t", str(fpath), "--points", str(tmp_path / "p.csv"), str(tmp_path / "q.csv")])
        == 0
    )
    np.testing.assert_allclose(read_points(tmp_path / "q.csv").points[0], p + t, atol=1e-5)

    out2 = tmp_path / "fixed_on_moving.nii.gz"
    args = ["--mapping", "moving_to_fixed", "--invert", str(fpath)]
    assert apply_cli([*args, "--image", str(tmp_path / "fixed.nii.gz"), str(out2)]) == 0
    warped = read_image(out2).numpy()
    peak = grid.array_index_to_world(np.array(np.unravel_index(warped.argmax(), grid.shape)))
    np.testing.assert_allclose(peak[0], p + t, atol=1e-6)
    assert apply_cli([*args, "--points", str(tmp_path / "q.csv"), str(tmp_path / "r.csv")]) == 0
    np.testing.assert_allclose(read_points(tmp_path / "r.csv").points[0], p, atol=1e-4)


def test_refuses_field_of_the_other_direction(phantom_run, apply_cli, tmp_path, capsys):
    case, root = phantom_run["case"], phantom_run["root"]
    wrong = case / "field_moving_to_fixed.nii.gz"
    code = apply_cli(
        ["-t", str(wrong), "--image", str(root / "moving.nii.gz"), str(tmp_path / "o.nii.gz")]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "field_fixed_to_moving.nii.gz" in err and "moving_to_fixed" in err
    assert "Traceback" not in err and not (tmp_path / "o.nii.gz").exists()
    with pytest.raises(GeometryError, match="pulls a moving image onto the fixed grid"):
        load_chain([wrong], "fixed_to_moving")
    # inverting it, or stating the mapping, is accepted
    assert (
        load_chain([TransformSpec(wrong, invert=True)], "fixed_to_moving").mapping
        == "fixed_to_moving"
    )
    assert load_chain([wrong], "moving-to-fixed").mapping == "moving_to_fixed"


def test_jacobian_map(phantom_run, apply_cli, tmp_path, helpers):
    from medfeat.metrics.jacobian import jacobian_determinant_mm

    case = phantom_run["case"]
    out = case / "jacobian.nii.gz"  # outputs may go beside the run's files (never over them)
    assert apply_cli(["-t", str(case), "--jacobian", str(out)]) == 0
    field = read_displacement_field(case / "field_fixed_to_moving.nii.gz")
    np.testing.assert_allclose(helpers.read(out), jacobian_determinant_mm(field), rtol=1e-6)
    # a chain (field then a scaling by 1.2 in x) differentiated on a grid: det multiplies by 1.2
    from medfeat.apply import jacobian_map
    from medfeat.io.transform_files import AffineMap

    scale = np.diag([1.2, 1.0, 1.0, 1.0])
    both = jacobian_map(load_chain([field, AffineMap(scale)]), field.grid).numpy()
    alone = jacobian_map(load_chain([field]), field.grid).numpy()
    np.testing.assert_allclose(both[2:-2, 2:-2, 2:-2], 1.2 * alone[2:-2, 2:-2, 2:-2], rtol=0.05)


def test_labels_vote_and_nearest(phantom_run, apply_cli, tmp_path, helpers):
    case, root = phantom_run["case"], phantom_run["root"]
    vote, near = tmp_path / "vote.nii.gz", tmp_path / "near.nii.gz"
    labels = str(root / "moving_labels.nii.gz")
    assert apply_cli(["-t", str(case), "--labels", labels, str(vote)]) == 0
    assert (
        apply_cli(["-t", str(case), "--labels", labels, str(near), "--label-method", "nearest"])
        == 0
    )
    src = helpers.read(root / "moving_labels.nii.gz")
    v, n = helpers.read(vote), helpers.read(near)
    assert v.dtype == src.dtype and set(np.unique(v)) <= set(np.unique(src))
    # nearest neighbour is what the run itself wrote
    np.testing.assert_array_equal(n, helpers.read(case / "warped_moving_labels.nii.gz"))
    # both agree with the fixed labels (the phantom's truth) about as well; the vote no worse
    truth = phantom_run["pair"].fixed_labels.numpy()
    assert (v == truth).mean() >= (n == truth).mean() - 0.01 and (v == truth).mean() > 0.9


def test_label_vote_takes_the_majority(tmp_path):
    """Coarsening by 2 with an identity field: each output voxel votes among its inputs."""
    grid = Grid.from_shape((8, 8, 8), 1.0)
    arr = np.zeros(grid.shape, np.uint8)
    arr[:, :, 4:] = 3
    from medfeat.geometry import Image

    field = DisplacementField(np.zeros((3, *grid.shape)), grid)
    out = apply_transforms([field], labels=Image(arr, grid), spacing_mm=[2.0, 2.0, 2.0])
    assert out.grid.shape == (4, 4, 4) and out.numpy().dtype == np.uint8
    np.testing.assert_array_equal(out.numpy()[1, 1], [0, 0, 3, 3])


def test_warped_images_and_labels_do_not_claim_the_source_checksum(fixed_grid, helpers, tmp_path):
    """A warp is not the input file: no sha256 / content key of the source on the result."""
    from medfeat.geometry import Image

    path = write_displacement_field(helpers.smooth_field(fixed_grid, 3.0), tmp_path / "f.nii.gz")
    src = read_image(
        write_image(helpers.blob_image(fixed_grid, np.zeros(3), 8.0), tmp_path / "m.nii.gz")
    )
    assert "sha256" in src.meta
    warped = apply_transforms([path], image=src)
    assert "sha256" not in warped.meta and "content_key" not in warped.meta
    labels = Image((src.numpy() > 0.5).astype(np.uint8), src.grid, dict(src.meta))
    mapped = apply_transforms([path], labels=labels)
    assert "sha256" not in mapped.meta
