"""``medfeat apply`` options: output grids, composed fields, help, and bad input as one paragraph."""

from __future__ import annotations

import numpy as np
import pytest

from medfeat.apply import output_grid
from medfeat.errors import GeometryError
from medfeat.geometry import Grid, Image, PointSet
from medfeat.io.fields import read_displacement_field, write_displacement_field
from medfeat.io.images import read_image, write_image
from medfeat.io.point_files import read_points, write_points
from medfeat.io.transform_files import write_affine


@pytest.fixture
def files(tmp_path, fixed_grid, moving_grid, helpers):
    field = helpers.smooth_field(fixed_grid, 2.5)
    write_displacement_field(field, tmp_path / "field_fixed_to_moving.nii.gz")
    write_image(
        helpers.blob_image(moving_grid, np.array([-6.0, 18.0, 3.0]), 8.0), tmp_path / "m.nii.gz"
    )
    write_image(helpers.blob_image(fixed_grid, np.zeros(3)), tmp_path / "ref.nii.gz")
    affine = np.eye(4)
    affine[:3, 3] = [2.0, -1.0, 0.5]
    write_affine(affine, tmp_path / "pre.tfm")
    return tmp_path


def test_output_grid_options(fixed_grid):
    assert output_grid(fixed_grid).same_as(fixed_grid)
    other = Grid.from_shape((5, 6, 7), 3.0, (1.0, 2.0, 3.0))
    assert output_grid(fixed_grid, reference=Image(np.zeros(other.shape), other)).same_as(other)
    half = output_grid(fixed_grid, spacing_mm=[1.25, 0.75, 1.0])  # x y z
    # the box 22x18x14 voxels of 2.0x1.5x2.5 mm = 44x27x35 mm, covered by the new spacing
    assert half.size_ijk == (35, 36, 35) and half.spacing == (1.25, 0.75, 1.0)
    corner = np.array([[-0.5, -0.5, -0.5]])  # the first voxel's outer corner stays put
    np.testing.assert_allclose(half.index_to_world(corner), fixed_grid.index_to_world(corner))
    sized = output_grid(fixed_grid, size_ijk=[11, 9, 7])
    assert sized.shape == (7, 9, 11)
    np.testing.assert_allclose(sized.spacing, (4.0, 3.0, 5.0))
    moved = output_grid(fixed_grid, origin_mm=[1.0, 2.0, 3.0])
    assert moved.origin == (1.0, 2.0, 3.0) and moved.shape == fixed_grid.shape
    both = output_grid(fixed_grid, spacing_mm=[2.0], size_ijk=[4, 5, 6])
    assert both.shape == (6, 5, 4) and both.spacing == (2.0, 2.0, 2.0)
    with pytest.raises(GeometryError, match="reference image"):
        output_grid(None)
    with pytest.raises(GeometryError, match="positive"):
        output_grid(fixed_grid, spacing_mm=[1.0, 0.0, 1.0])
    with pytest.raises(GeometryError, match="needs 3"):
        output_grid(fixed_grid, origin_mm=[1.0, 2.0])


def test_chain_with_affine_onto_reference_and_write_field(files, apply_cli, fixed_grid):
    f = files
    warped, whole = f / "w.nii.gz", f / "whole.nii.gz"
    args = ["-t", str(f / "pre.tfm"), "-t", str(f / "field_fixed_to_moving.nii.gz")]
    assert apply_cli([*args, "--reference", str(f / "ref.nii.gz"), "--image", str(f / "m.nii.gz"),
                      str(warped), "--write-field", str(whole), "--spacing-mm", "2.5"]) == 0  # fmt: skip
    out = read_image(warped)
    assert out.grid.spacing == (2.5, 2.5, 2.5)
    field = read_displacement_field(whole)
    assert field.mapping == "fixed_to_moving" and field.grid.same_as(out.grid)
    # the written whole field applied alone gives the same image
    again = f / "again.nii.gz"
    assert apply_cli(["-t", str(whole), "--image", str(f / "m.nii.gz"), str(again)]) == 0
    np.testing.assert_allclose(read_image(again).numpy(), out.numpy(), atol=1e-4)


def test_voxel_points_in_and_out(files, apply_cli, fixed_grid, moving_grid):
    f = files
    index = np.array([[3.0, 4.0, 5.0], [10.0, 8.0, 6.0]])  # numpy (k, j, i) of the fixed image
    np.savetxt(f / "vox.txt", index)
    out = f / "out.csv"
    assert apply_cli(["-t", str(f / "field_fixed_to_moving.nii.gz"), "--points", str(f / "vox.txt"),
                      str(out), "--points-axis-order", "zyx", "--out-format", "voxel-csv",
                      "--out-image", str(f / "m.nii.gz")]) == 0  # fmt: skip
    got = read_points(out, moving_grid, check_inside=False).points
    field = read_displacement_field(f / "field_fixed_to_moving.nii.gz")
    expected = field.transform_points(fixed_grid.array_index_to_world(index))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_help_says_which_field_to_pass(apply_cli, capsys):
    assert apply_cli(["--help"]) == 0
    text = capsys.readouterr().out
    assert "field_fixed_to_moving.nii.gz" in text and "PULLED" in text and "PUSHED" in text
    assert "--mapping moving_to_fixed" in text and "reverse order" in text


BAD = [
    (["--image", "{f}/m.nii.gz", "{f}/o.nii.gz"], "No transform was given"),
    (["-t", "{f}/nope.nii.gz", "--image", "{f}/m.nii.gz", "{f}/o.nii.gz"], "does not exist"),
    (["-t", "{f}/field_fixed_to_moving.nii.gz"], "Nothing to write"),
    (["-t", "{f}/pre.tfm", "--image", "{f}/m.nii.gz", "{f}/o.nii.gz"], "output grid is unknown"),
    (
        ["-t", "{f}", "--image", "{f}/m.nii.gz", "{f}/o.nii.gz", "--mapping", "moving_to_fixed"],
        "has no moving_to_fixed transform",
    ),  # fmt: skip
    (
        [
            "-t",
            "{f}/field_fixed_to_moving.nii.gz",
            "--image",
            "{f}/m.nii.gz",
            "{f}/o.nii.gz",
            "--interpolation",
            "cubic",
        ],
        "Unknown interpolation",
    ),  # fmt: skip
    (
        ["-t", "{f}/field_fixed_to_moving.nii.gz", "--labels", "{f}/m.nii.gz", "{f}/o.nii.gz"],
        "not a label map",
    ),  # fmt: skip
    (
        ["-t", "{f}/field_fixed_to_moving.nii.gz", "--points", "{f}/p.txt", "{f}/o.csv"],
        "plain table of coordinates",
    ),  # fmt: skip
    (
        ["-t", "{f}/pre.tfm", "--points", "{f}/p.txt", "{f}/o.csv", "--points-axis-order", "xyz"],
        "--points-image",
    ),  # fmt: skip
    (
        [
            "-t",
            "{f}/field_fixed_to_moving.nii.gz",
            "--mapping",
            "sideways",
            "--jacobian",
            "{f}/j.nii.gz",
        ],
        "Unknown mapping",
    ),  # fmt: skip
    (
        ["-t", "{f}/field_fixed_to_moving.nii.gz", "--image", "{f}/m.nii.gz", "{f}/m.nii.gz"],
        "input",
    ),  # fmt: skip
]


@pytest.mark.parametrize(("argv", "message"), BAD)
def test_bad_input_is_one_paragraph(argv, message, files, apply_cli, capsys):
    np.savetxt(files / "p.txt", np.array([[1.0, 2.0, 3.0]]))
    before = (files / "m.nii.gz").read_bytes()
    code = apply_cli([a.format(f=files) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 12
    assert (files / "m.nii.gz").read_bytes() == before  # inputs are never overwritten


def test_python_api_takes_one_input(files):
    from medfeat.apply import apply_transforms
    from medfeat.errors import ConfigError

    with pytest.raises(ConfigError, match="exactly one"):
        apply_transforms([files / "pre.tfm"])
    moved = apply_transforms([files / "pre.tfm"], points=PointSet(np.zeros((1, 3))))
    np.testing.assert_allclose(moved.points, [[2.0, -1.0, 0.5]])
    write_points(moved, files / "x.csv")


def test_every_output_has_its_provenance_beside_it(files, apply_cli):
    import json

    from medfeat.io.checksum import sha256_file

    f = files
    warped, whole = f / "w.nii.gz", f / "whole.nii.gz"
    field = f / "field_fixed_to_moving.nii.gz"
    args = ["-t", str(f / "pre.tfm"), "-t", str(field), "--interpolation", "bspline"]
    assert apply_cli([*args, "--reference", str(f / "ref.nii.gz"), "--image", str(f / "m.nii.gz"),
                      str(warped), "--write-field", str(whole)]) == 0  # fmt: skip
    for out in (warped, whole):
        record = json.loads((f / (out.name + ".provenance.json")).read_text())
        assert record["output"] == {"path": str(out.resolve()), "sha256": sha256_file(out)}
        inputs = {i["path"]: i["sha256"] for i in record["inputs"]}
        for src in (f / "m.nii.gz", f / "pre.tfm", field):
            assert inputs[str(src.resolve())] == sha256_file(src)
        assert record["config"]["interpolation"] == "bspline"
        assert record["config"]["mapping"] == "fixed_to_moving"
        assert "pre.tfm" in record["config"]["transforms"]
        assert record["versions"]["medfeat"] and record["command"]
