"""Fixtures for ``medfeat apply``: a small registration run, synthetic fields on rotated grids, and a
way to call the command before it is listed in ``medfeat.cli.main``."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from medfeat.geometry import DisplacementField, Grid, Image

PIPELINE = """\
kind: registration
seed: 0
device: cpu
data: {name: breathing-phantom, shape: [32, 32, 32], spacing_mm: 5.0, amplitude_mm: 8.0}
backbone: {name: mind-ssc}
optimiser: {name: convex-adam, search_radius_mm: 20.0, adam_iterations: 20}
"""


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def run_apply(argv: list[str]) -> int:
    """``medfeat apply ARGV`` through medfeat's CLI; ``--help`` exits through argparse."""
    from medfeat.cli import main as cli_main

    try:
        return cli_main.main(["apply", *argv])
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.fixture(scope="session")
def phantom_run(tmp_path_factory) -> dict:
    """A registration run of a small breathing phantom: its case folder and the input pair."""
    from medfeat.cli.main import main
    from medfeat.io.images import write_image
    from medfeat.phantoms import breathing_phantom

    root = tmp_path_factory.mktemp("phantom")
    (root / "p.yaml").write_text(PIPELINE)
    assert main(["-q", "run", str(root / "p.yaml"), "--out", str(root / "out")]) == 0
    case = next(
        p for p in (root / "out").iterdir() if (p / "field_fixed_to_moving.nii.gz").is_file()
    )
    pair = breathing_phantom((32, 32, 32), 5.0, amplitude_mm=8.0, seed=0)
    write_image(pair.moving, root / "moving.nii.gz")
    write_image(pair.fixed, root / "fixed.nii.gz")
    write_image(pair.moving_labels, root / "moving_labels.nii.gz")
    return {"case": case, "pair": pair, "root": root}


@pytest.fixture
def fixed_grid() -> Grid:
    """Rotated, anisotropic, non-cubic grid with a non-zero origin (shape in numpy order)."""
    return Grid((14, 18, 22), (2.0, 1.5, 2.5), (-20.0, 12.5, -7.0), rotation(0.2, -0.15, 0.3))


@pytest.fixture
def moving_grid() -> Grid:
    return Grid((16, 20, 20), (1.8, 1.8, 2.2), (-24.0, 8.0, -12.0), rotation(-0.1, 0.1, -0.2))


def smooth_field(grid: Grid, amplitude_mm: float = 2.0, mapping: str = "fixed_to_moving"):
    """A smooth, fold-free displacement on ``grid`` (world LPS mm)."""
    world = grid.array_index_to_world(
        np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), -1).reshape(-1, 3)
    )
    centre = world.mean(axis=0)
    r = (world - centre) / 25.0
    disp = amplitude_mm * np.stack(
        [np.sin(r[:, 1]) + 0.3, np.cos(r[:, 2]) * r[:, 0], np.sin(r[:, 0] + r[:, 1]) - 0.2], axis=1
    )
    return DisplacementField(np.moveaxis(disp.reshape(*grid.shape, 3), -1, 0), grid, mapping)


def blob_image(grid: Grid, centre_mm: np.ndarray, sigma_mm: float = 6.0) -> Image:
    world = grid.array_index_to_world(
        np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), -1).reshape(-1, 3)
    )
    d2 = ((world - centre_mm) ** 2).sum(axis=1)
    data = np.exp(-d2 / (2 * sigma_mm**2)).reshape(grid.shape).astype(np.float32)
    return Image(data, grid)


def read(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.fixture
def apply_cli():
    """``apply_cli(argv) -> exit code`` (see :func:`run_apply`)."""
    return run_apply


@pytest.fixture
def helpers():
    """The synthetic-data helpers of this folder, for tests (conftest is not importable)."""
    return argparse.Namespace(
        rotation=rotation, smooth_field=smooth_field, blob_image=blob_image, read=read
    )
