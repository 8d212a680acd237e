import json

import numpy as np
import pytest

from medfeat.errors import LandmarkError
from medfeat.geometry import PointSet
from medfeat.io import read_landmarks, write_landmarks

IDX_XYZ = np.array(
    [[1.0, 2.0, 3.0], [10.0, 8.5, 0.0], [0.25, 4.0, 5.0]]
)  # ITK (i, j, k), grid size_ijk (11, 9, 6)


def test_voxel_table_axis_orders_agree(tmp_path, image):
    world = image.grid.index_to_world(IDX_XYZ)
    np.savetxt(tmp_path / "xyz.txt", IDX_XYZ)
    np.savetxt(tmp_path / "zyx.csv", IDX_XYZ[:, ::-1], delimiter=",")
    a = read_landmarks(tmp_path / "xyz.txt", image=image, axis_order="xyz")
    b = read_landmarks(tmp_path / "zyx.csv", image=image, axis_order="zyx")
    np.testing.assert_allclose(a.points, world)
    np.testing.assert_allclose(b.points, world)
    assert b.meta["axis_order"] == "zyx" and b.meta["source_space"] == "voxel"
    # read with the wrong order, these points fall outside the (non-cubic) image
    with pytest.raises(LandmarkError, match="outside the image") as err:
        read_landmarks(tmp_path / "xyz.txt", image=image, axis_order="zyx")
    assert "axis_order" in err.value.remedy


def test_voxel_coordinates_need_image_and_axis_order(tmp_path, image):
    np.savetxt(tmp_path / "p.txt", IDX_XYZ)
    with pytest.raises(LandmarkError, match="image"):
        read_landmarks(tmp_path / "p.txt", axis_order="zyx")
    with pytest.raises(LandmarkError, match="axis_order"):
        read_landmarks(tmp_path / "p.txt", image=image, space="voxel")
    with pytest.raises(LandmarkError, match="world mm or voxels"):
        read_landmarks(tmp_path / "p.txt")
    with pytest.raises(LandmarkError, match="not valid"):
        read_landmarks(tmp_path / "p.txt", image=image, axis_order="ijk")


def test_world_tables_lps_and_ras_with_header(tmp_path):
    (tmp_path / "w.csv").write_text("label,x,y,z\nA,1,2,3\nB,-4,5.5,6\n")
    lps = read_landmarks(tmp_path / "w.csv", space="lps")
    np.testing.assert_allclose(lps.points, [[1, 2, 3], [-4, 5.5, 6]])
    assert lps.labels == ["A", "B"]
    ras = read_landmarks(tmp_path / "w.csv", space="ras")
    np.testing.assert_allclose(ras.points, [[-1, -2, 3], [4, -5.5, 6]])
    (tmp_path / "ws.txt").write_text("# comment\n1 2 3\n4\t5  6\n")
    np.testing.assert_allclose(
        read_landmarks(tmp_path / "ws.txt", space="lps").points, [[1, 2, 3], [4, 5, 6]]
    )


def test_bad_tables(tmp_path):
    (tmp_path / "ragged.txt").write_text("1 2 3\n4 5\n")
    with pytest.raises(LandmarkError, match="numeric columns"):
        read_landmarks(tmp_path / "ragged.txt", space="lps")
    (tmp_path / "junk.txt").write_text("1 2 3\n4 five 6\n")
    with pytest.raises(LandmarkError, match="line 2"):
        read_landmarks(tmp_path / "junk.txt", space="lps")
    with pytest.raises(LandmarkError, match="does not exist"):
        read_landmarks(tmp_path / "nope.txt", space="lps")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(LandmarkError, match="no points"):
        read_landmarks(tmp_path / "empty.txt", space="lps")


def test_elastix_point_and_index_files(tmp_path, image):
    (tmp_path / "pts.txt").write_text("point\n2\n1.5 2 3\n-4 5 6\n")
    ps = read_landmarks(tmp_path / "pts.txt")
    np.testing.assert_allclose(ps.points, [[1.5, 2, 3], [-4, 5, 6]])
    assert ps.meta["format"] == "elastix"
    (tmp_path / "idx.txt").write_text(
        "index\n3\n" + "\n".join(" ".join(map(str, r)) for r in IDX_XYZ)
    )
    np.testing.assert_allclose(
        read_landmarks(tmp_path / "idx.txt", image=image).points, image.grid.index_to_world(IDX_XYZ)
    )
    with pytest.raises(LandmarkError, match="image"):
        read_landmarks(tmp_path / "idx.txt")
    with pytest.raises(LandmarkError, match="xyz"):
        read_landmarks(tmp_path / "idx.txt", image=image, axis_order="zyx")
    (tmp_path / "bad.txt").write_text("point\n3\n1 2 3\n")
    with pytest.raises(LandmarkError, match="announces 3 points but lists 1"):
        read_landmarks(tmp_path / "bad.txt")


def test_transformix_outputpoints(tmp_path):
    text = (
        "Point\t0\t; InputIndex = [ 1 2 3 ]\t; InputPoint = [ 1.000 2.000 3.000 ]\t; OutputIndexFixed = [ 1 2 3 ]"
        "\t; OutputPoint = [ 1.500000 2.250000 -3.000000 ]\t; Deformation = [ 0.5 0.25 -6 ]\n"
        "Point\t1\t; InputIndex = [ 4 5 6 ]\t; InputPoint = [ 4.0 5.0 6.0 ]\t; OutputIndexFixed = [ 4 5 6 ]"
        "\t; OutputPoint = [ 4.000000 5.000000 7.000000 ]\t; Deformation = [ 0 0 1 ]\n"
    )
    (tmp_path / "outputpoints.txt").write_text(text)
    ps = read_landmarks(tmp_path / "outputpoints.txt")
    np.testing.assert_allclose(ps.points, [[1.5, 2.25, -3], [4, 5, 7]])


FCSV = """# Markups fiducial file version = 4.11
{cs}# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID
vtkMRMLMarkupsFiducialNode_0,10,20,30,0,0,0,1,1,1,0,F-1,,
vtkMRMLMarkupsFiducialNode_1,-1.5,2.5,-3.5,0,0,0,1,1,1,0,F-2,,
"""


@pytest.mark.parametrize(
    ("cs_line", "expected"),
    [
        ("", [[-10, -20, 30], [1.5, -2.5, -3.5]]),  # no CoordinateSystem line: RAS
        ("# CoordinateSystem = RAS\n", [[-10, -20, 30], [1.5, -2.5, -3.5]]),
        ("# CoordinateSystem = 0\n", [[-10, -20, 30], [1.5, -2.5, -3.5]]),
        ("# CoordinateSystem = LPS\n", [[10, 20, 30], [-1.5, 2.5, -3.5]]),
    ],
)
def test_slicer_fcsv(tmp_path, cs_line, expected):
    (tmp_path / "f.fcsv").write_text(FCSV.format(cs=cs_line))
    ps = read_landmarks(tmp_path / "f.fcsv")
    np.testing.assert_allclose(ps.points, expected)
    assert ps.labels == ["F-1", "F-2"]


@pytest.mark.parametrize(("cs", "sign"), [("RAS", -1), ("LPS", 1)])
def test_slicer_mrk_json(tmp_path, cs, sign):
    doc = {
        "markups": [
            {
                "type": "Fiducial",
                "coordinateSystem": cs,
                "controlPoints": [{"label": "a", "position": [1.0, 2.0, 3.0]}],
            }
        ]
    }
    (tmp_path / "p.mrk.json").write_text(json.dumps(doc))
    np.testing.assert_allclose(
        read_landmarks(tmp_path / "p.mrk.json").points, [[sign * 1.0, sign * 2.0, 3.0]]
    )
    stated = cs.lower()
    other = "ras" if stated == "lps" else "lps"
    read_landmarks(tmp_path / "p.mrk.json", space=stated)  # agreeing with the file is fine
    with pytest.raises(LandmarkError, match=f"holds {stated} coordinates, but space='{other}'"):
        read_landmarks(tmp_path / "p.mrk.json", space=other)


def test_write_landmarks_refuses_inputs(tmp_path):
    from medfeat.errors import InputFileError

    src = tmp_path / "in.csv"
    src.write_text("x,y,z\n1,2,3\n")
    with pytest.raises(InputFileError, match="input of this run"):
        write_landmarks(np.zeros((1, 3)), src, protect={src})
    assert src.read_text() == "x,y,z\n1,2,3\n"


@pytest.mark.parametrize("name", ["p.fcsv", "p.mrk.json", "p.csv", "p.txt"])
def test_world_round_trips(tmp_path, name):
    pts = PointSet(np.array([[1.25, -2.5, 3.0], [40.0, 50.5, -60.125]]), labels=["a", "b"])
    space = None if name.endswith(("fcsv", "json")) else "lps"
    for write_space in ("lps", "ras"):
        path = write_landmarks(pts, tmp_path / name, space=write_space)
        back = read_landmarks(path, space=write_space if space else None)
        np.testing.assert_allclose(back.points, pts.points, atol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_elastix_and_voxel_round_trips(tmp_path, image):
    pts = PointSet(image.grid.index_to_world(IDX_XYZ))
    write_landmarks(pts, tmp_path / "e.txt", fmt="elastix")
    assert (tmp_path / "e.txt").read_text().startswith("point\n3\n")
    np.testing.assert_allclose(read_landmarks(tmp_path / "e.txt").points, pts.points, atol=1e-6)
    write_landmarks(pts, tmp_path / "i.txt", fmt="elastix", space="voxel", image=image)
    assert (tmp_path / "i.txt").read_text().startswith("index\n3\n")
    np.testing.assert_allclose(
        read_landmarks(tmp_path / "i.txt", image=image).points, pts.points, atol=1e-5
    )
    write_landmarks(pts, tmp_path / "z.txt", space="voxel", image=image, axis_order="zyx")
    np.testing.assert_allclose(np.loadtxt(tmp_path / "z.txt"), IDX_XYZ[:, ::-1], atol=1e-6)
    with pytest.raises(LandmarkError, match="axis_order"):
        write_landmarks(pts, tmp_path / "v.txt", space="voxel", image=image)


@pytest.mark.realdata
@pytest.mark.parametrize(("case", "mean_mm"), [("case_002", 4.4), ("case_005", 7.5)])
def test_lung4dct_landmarks_zyx(shared_data, case, mean_mm):
    import SimpleITK as sitk

    from medfeat.io import read_image
    from medfeat.metrics import tre

    folder = shared_data / "lung4dct" / case
    t00 = read_image(folder / "T00.nii.gz")
    lm00 = read_landmarks(folder / "landmarks_T00.txt", image=t00, axis_order="zyx")
    lm50 = read_landmarks(folder / "landmarks_T50.txt", image=t00, axis_order="zyx")
    assert len(lm00) == 375
    stats = tre(lm50, lm00)
    assert stats["mean"] == pytest.approx(mean_mm, abs=0.05)
    # the documented conversion: world = TransformContinuousIndexToPhysicalPoint(row[::-1])
    ref = sitk.ReadImage(str(folder / "T00.nii.gz"))
    row = np.loadtxt(folder / "landmarks_T00.txt")[0]
    np.testing.assert_allclose(
        lm00.points[0], ref.TransformContinuousIndexToPhysicalPoint(row[::-1].tolist()), atol=1e-4
    )


# ----------------------------------------------------------------------------------- bad inputs
def test_world_points_far_outside_the_image_are_refused(tmp_path, image):
    inside = image.grid.index_to_world(IDX_XYZ)
    far = inside.copy()
    far[1] += 400.0
    np.savetxt(tmp_path / "far.csv", far, delimiter=",")
    with pytest.raises(LandmarkError, match="1 of 3 points lie more than 10 mm outside") as err:
        read_landmarks(tmp_path / "far.csv", image=image, space="lps")
    assert "point 2" in str(err.value) and "check_inside" not in err.value.remedy
    assert "remove those rows" in err.value.remedy
    # the tolerance is an option in mm; None skips the check; without an image nothing is checked
    read_landmarks(tmp_path / "far.csv", image=image, space="lps", outside_tolerance_mm=None)
    read_landmarks(tmp_path / "far.csv", space="lps")
    edge = image.grid.index_to_world([[-3.5, 4.0, 2.0]])  # 3 voxels of 0.7 mm below i = -0.5
    np.savetxt(tmp_path / "edge.csv", edge, delimiter=",")
    read_landmarks(tmp_path / "edge.csv", image=image, space="lps")
    with pytest.raises(LandmarkError, match="more than 1 mm outside .*2.1 mm outside"):
        read_landmarks(tmp_path / "edge.csv", image=image, space="lps", outside_tolerance_mm=1.0)


def test_ras_points_read_as_lps_get_the_real_remedy(tmp_path):
    from medfeat.geometry import Grid

    grid = Grid.from_shape((20, 20, 20), 2.0, origin=(60.0, 60.0, 0.0))
    pts = grid.index_to_world([[2.0, 3.0, 4.0], [10.0, 12.0, 15.0]])
    np.savetxt(tmp_path / "ras.txt", pts * [-1, -1, 1])
    with pytest.raises(LandmarkError, match="outside") as err:
        read_landmarks(tmp_path / "ras.txt", image=grid, space="lps")
    assert "set the landmark file's space to 'ras'" in err.value.remedy
    np.testing.assert_allclose(
        read_landmarks(tmp_path / "ras.txt", image=grid, space="ras").points, pts
    )


def test_voxel_points_outside_name_a_real_remedy(tmp_path, image):
    np.savetxt(tmp_path / "one_based.txt", IDX_XYZ[:2] + 1)  # (11, 9.5, 1) is past i = 10.5
    with pytest.raises(LandmarkError, match="outside the image") as err:
        read_landmarks(tmp_path / "one_based.txt", image=image, axis_order="xyz")
    assert "subtract 1" in err.value.remedy and "check_inside" not in err.value.remedy
    np.savetxt(tmp_path / "xyz.txt", IDX_XYZ)
    with pytest.raises(LandmarkError) as err:
        read_landmarks(tmp_path / "xyz.txt", image=image, axis_order="zyx")
    assert "set axis_order to 'xyz'" in err.value.remedy


@pytest.mark.parametrize("bad", ["inf", "nan", "-Infinity"])
def test_non_finite_coordinates_are_refused_with_their_line(tmp_path, bad):
    (tmp_path / "p.txt").write_text(f"# points\n1 2 3\n4 {bad} 6\n")
    with pytest.raises(LandmarkError, match="NaN or infinite coordinates \\(line 3"):
        read_landmarks(tmp_path / "p.txt", space="lps")
    (tmp_path / "e.txt").write_text(f"point\n2\n1 2 3\n4 5 {bad}\n")
    with pytest.raises(LandmarkError, match="line 4"):
        read_landmarks(tmp_path / "e.txt")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("ragged.txt", "point\n3\n1 2 3\n4 5\n7 8 9\n", "line 4: 2 coordinates"),
        ("idx.txt", "index\n2\n1 2 3 4\n5 6 7 8\n", "line 3: 4 coordinates"),
        ("count.txt", "point\nthree\n1 2 3\n", "second line .* number of points"),
        (
            "outputpoints.txt",
            "Point\t0\t; OutputPoint = [ 1 2 3 ]\nPoint\t1\t; OutputPoint = [ 4 5 ]\n",
            "line 2: 2 OutputPoint coordinates",
        ),
        ("tp.txt", "Point\t0\t; OutputPoint = [ 1 two 3 ]\n", "line 1: expected numbers"),
        (
            "short.fcsv",
            "# CoordinateSystem = LPS\nid1,1,2,3,0\nid2,4,5\n",
            "line 3: 3 comma-separated",
        ),
        ("cols.fcsv", "# columns = id,a,b\nid1,1,2\n", "names no x, y and z"),
        ("list.mrk.json", "[1, 2, 3]", "top level is a JSON list"),
        ("string.mrk.json", '{"markups": "F-1"}', "'markups' is not a list"),
        ("strings.mrk.json", '{"markups": ["F-1"]}', "'markups' is not a list"),
        (
            "cps.mrk.json",
            '{"markups": [{"controlPoints": "none"}]}',
            "'controlPoints' is not a list",
        ),
        (
            "text.mrk.json",
            '{"markups": [{"controlPoints": [{"label": "a", "position": "1,2,3"}]}]}',
            'position of control point 0 \\(a\\) is "1,2,3"',
        ),
        (
            "short.mrk.json",
            '{"markups": [{"controlPoints": [{"position": [1, 2]}]}]}',
            "expected a list of 3 numbers",
        ),
    ],
)
def test_broken_point_files_give_clear_messages(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(LandmarkError, match=message) as err:
        read_landmarks(tmp_path / name, space="lps" if name.endswith(".fcsv") else None)
    assert err.value.remedy


def test_header_only_table_gets_the_right_remedy(tmp_path):
    (tmp_path / "h.csv").write_text("label,x,y,z\n\n")
    with pytest.raises(LandmarkError, match="header line .* but no point rows") as err:
        read_landmarks(tmp_path / "h.csv", space="lps")
    assert "export the landmarks again" in err.value.remedy
    assert "coordinate columns" not in err.value.remedy


def test_dimension_is_checked_before_any_work(tmp_path, image):
    from medfeat.io.landmarks import check_landmark_dimension

    (tmp_path / "two.csv").write_text("x,y\n1,2\n3,4\n")
    with pytest.raises(LandmarkError, match="2 coordinates per point but the image is 3D") as err:
        check_landmark_dimension(tmp_path / "two.csv", 3)
    assert "exactly 3 coordinate columns" in err.value.remedy
    assert check_landmark_dimension(tmp_path / "two.csv", 2) == 2
    with pytest.raises(LandmarkError, match="2 coordinates per point but the image is 3D"):
        read_landmarks(tmp_path / "two.csv", image=image, space="lps")
    with pytest.raises(LandmarkError, match="does not exist"):
        check_landmark_dimension(tmp_path / "nope.csv", 3)


def test_registration_csv_states_its_space_and_reads_back_without_it(tmp_path, image):
    """The mapped landmarks a registration writes (``write_landmarks(..., '<name>.csv')``) carry
    the self-describing header of :func:`medfeat.io.point_files.write_points`, so the public
    readers need no ``space=``."""
    from medfeat.io.point_files import read_points

    pts = PointSet(image.grid.index_to_world(IDX_XYZ))
    path = write_landmarks(pts, tmp_path / "fixed_landmarks_in_moving_world_lps_mm.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "# medfeat points: world mm, space=LPS"
    assert lines[1] == "label,x,y,z" and len(lines) == 2 + len(pts)
    for reader in (read_landmarks, read_points):
        back = reader(path, image=image)
        np.testing.assert_allclose(back.points, pts.points, atol=1e-6)
        assert back.meta["source_space"] == "lps"
    assert read_landmarks(path, space="lps").points.shape == (3, 3)  # agreeing is fine
    with pytest.raises(LandmarkError, match="holds lps coordinates, but space='ras'"):
        read_landmarks(path, space="ras")
    # written in RAS, it says so and reads back as the same LPS points
    ras = write_landmarks(pts, tmp_path / "ras.csv", space="ras")
    assert ras.read_text().startswith("# medfeat points: world mm, space=RAS")
    np.testing.assert_allclose(read_landmarks(ras).points, pts.points, atol=1e-6)


def test_plain_csv_tables_still_need_their_space(tmp_path):
    (tmp_path / "old.csv").write_text("x,y,z\n1,2,3\n")
    with pytest.raises(LandmarkError, match="world mm or voxels"):
        read_landmarks(tmp_path / "old.csv")
    (tmp_path / "note.csv").write_text("# medfeat points: something else\nx,y,z\n1,2,3\n")
    with pytest.raises(LandmarkError, match="world mm or voxels"):
        read_landmarks(tmp_path / "note.csv")


def test_voxel_tables_that_state_their_axis_order(tmp_path, image):
    from medfeat.io.point_files import write_points

    pts = PointSet(image.grid.index_to_world(IDX_XYZ))
    path = write_points(pts, tmp_path / "v.txt", "voxel-csv", image=image, axis_order="zyx")
    back = read_landmarks(path, image=image)
    np.testing.assert_allclose(back.points, pts.points, atol=1e-5)
    assert back.meta["axis_order"] == "zyx"
    with pytest.raises(LandmarkError, match="states its indices are in 'zyx' order"):
        read_landmarks(path, image=image, axis_order="xyz")
