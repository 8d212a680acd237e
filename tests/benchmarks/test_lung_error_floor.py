"""benchmarks/lung4dct_error_floor.py: the annotation-quantisation floor and per-axis errors."""

from __future__ import annotations

import numpy as np
from benchmarks import lung4dct_error_floor as floor

from medfeat.geometry import Grid, Image
from medfeat.io.images import write_image
from medfeat.io.landmarks import write_landmarks


def test_floor_matches_the_closed_form_along_one_axis():
    # two independent U(-h, h) errors differ by 2h/3 on average: h = 1.5 mm gives 1 mm
    assert abs(floor.quantisation_floor_mm((3.0, 1e-9, 1e-9), 400_000, 0) - 1.0) < 0.01
    assert floor.quantisation_floor_mm((2.5, 1.16, 1.16), 200_000, 0) > 1.0


def test_slice_lattice_of_rows_on_2_5_mm_slices_of_a_2_mm_grid():
    rows = np.array([[1.25 * k + 0.5, 10.3, 4.1] for k in (3, 7, 8, 20)])
    assert floor.slice_lattice(rows) == 1.25


def test_per_axis_errors_from_a_run_folder(tmp_path, capsys):
    grid = Grid((20, 16, 20), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), np.diag([1.0, 1.0, -1.0]))
    case, run = tmp_path / "data" / "case_002", tmp_path / "run" / "case_002"
    case.mkdir(parents=True)
    run.mkdir(parents=True)
    write_image(Image(np.zeros(grid.shape, np.float32), grid), case / "T50.nii.gz")
    truth = np.array([[5.0, 6.0, 7.0], [8.75, 4.0, 9.0], [12.5, 10.0, 3.0]])  # (k, j, i)
    np.savetxt(case / "landmarks_T00.txt", truth)
    np.savetxt(case / "landmarks_T50.txt", truth)
    error_vox = np.array([[0.5, 0.0, 0.0], [0.0, 0.25, 0.0], [0.0, 0.0, 2.0]])
    world = grid.array_index_to_world(truth + error_vox)
    write_landmarks(world, run / floor.MAPPED)
    vec = floor.case_errors(case, run)["vectors"]
    assert np.allclose(vec, error_vox * 2.0, atol=1e-6)
    assert floor.main(["--root", str(tmp_path / "data"), "--cases", "case_002",
                       "--run", str(tmp_path / "run"), "--samples", "1000"]) == 0  # fmt: skip
    table = capsys.readouterr().out
    assert "| case_002 | 3.750 |" in table  # the rows' slice step
    assert "0.33 / 0.17 / 1.33" in table  # mean abs error per axis, mm
    assert "| 1.833 |" in table  # mean of 1, 0.5 and 4 mm
    assert "0.750 (1)" in table  # the 4 mm error is left out


def test_skips_without_data(tmp_path, capsys):
    assert floor.main(["--root", str(tmp_path / "absent")]) == 0
    assert "SKIP" in capsys.readouterr().out
