"""Points written in every landmark format medfeat reads come back through medfeat's readers."""

from __future__ import annotations

import numpy as np
import pytest

from medfeat.errors import LandmarkError
from medfeat.geometry import PointSet
from medfeat.io.landmarks import read_landmarks
from medfeat.io.point_files import POINT_FORMATS, format_of, read_points, write_points


@pytest.fixture
def points(fixed_grid) -> PointSet:
    index = np.array([[1.25, 2.5, 3.75], [10.0, 4.0, 7.5], [20.5, 16.0, 12.25]])
    return PointSet(fixed_grid.index_to_world(index), labels=["a", "b", "c"])


CASES = [
    ("pts.csv", "csv", {}),
    ("pts_ras.csv", "csv", {"space": "ras"}),
    ("vox_xyz.csv", "voxel-csv", {"axis_order": "xyz"}),
    ("vox_zyx.csv", "voxel-csv", {"axis_order": "zyx"}),
    ("elastix.txt", "elastix", {}),
    ("elastix_index.txt", "elastix-index", {}),
    ("outputpoints.txt", "transformix", {}),
    ("pts.fcsv", "fcsv", {}),
    ("pts.mrk.json", "mrk.json", {}),
]


@pytest.mark.parametrize(("name", "fmt", "options"), CASES)
def test_every_format_round_trips(name, fmt, options, points, fixed_grid, tmp_path):
    path = write_points(points, tmp_path / name, fmt, image=fixed_grid, source=points, **options)
    back = read_points(path, fixed_grid)
    np.testing.assert_allclose(back.points, points.points, atol=1e-5, rtol=0)
    assert format_of(back)[0] == fmt
    if fmt in ("csv", "fcsv", "mrk.json"):
        assert back.labels == points.labels
    if fmt == "voxel-csv":
        assert format_of(back)[1] == options["axis_order"]


def test_headers_state_the_space(points, fixed_grid, tmp_path):
    text = write_points(points, tmp_path / "p.csv").read_text().splitlines()
    assert text[:2] == ["# medfeat points: world mm, space=LPS", "label,x,y,z"]
    ras = write_points(points, tmp_path / "r.csv", space="ras").read_text().splitlines()
    assert ras[0].endswith("space=RAS")
    assert float(ras[2].split(",")[1]) == pytest.approx(-points.points[0, 0], abs=1e-6)
    vox = write_points(points, tmp_path / "v.csv", "voxel-csv", image=fixed_grid, axis_order="zyx")
    lines = vox.read_text().splitlines()
    assert "axis_order=zyx" in lines[0] and lines[1] == "# columns: k,j,i"
    np.testing.assert_allclose([float(v) for v in lines[3].split(",")], [3.75, 2.5, 1.25])
    # medfeat's plain reader reads the world table when told its space
    np.testing.assert_allclose(
        read_landmarks(tmp_path / "p.csv", space="lps").points, points.points, atol=1e-6
    )
    tx = write_points(points, tmp_path / "outputpoints.txt", source=PointSet(points.points - 1.0))
    assert "Deformation = [ 1.000000 1.000000 1.000000 ]" in tx.read_text()


def test_unclear_or_impossible_requests(points, tmp_path):
    with pytest.raises(LandmarkError, match="not clear from its name"):
        write_points(points, tmp_path / "p.txt")
    with pytest.raises(LandmarkError, match="needs the image they index"):
        write_points(points, tmp_path / "v.csv", "voxel-csv", axis_order="xyz")
    with pytest.raises(LandmarkError, match="RAS is for csv"):
        write_points(points, tmp_path / "p.fcsv", space="ras")
    with pytest.raises(LandmarkError, match="Unknown point format"):
        write_points(points, tmp_path / "p.csv", "vtk")
    assert set(POINT_FORMATS) == {fmt for _, fmt, _ in CASES}
