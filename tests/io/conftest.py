"""Synthetic grids and images with non-trivial geometry, shared by the io tests."""

from __future__ import annotations

import numpy as np
import pytest

from medfeat.geometry import Grid, Image


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


@pytest.fixture
def grid() -> Grid:
    """Rotated, anisotropic, non-zero origin, non-cubic (shape in numpy order k, j, i)."""
    return Grid((6, 9, 11), (0.7, 1.3, 2.5), (-12.5, 30.25, 7.0), rotation(0.3, -0.2, 0.5))


@pytest.fixture
def image(grid: Grid) -> Image:
    rng = np.random.default_rng(0)
    return Image(rng.normal(size=grid.shape).astype(np.float32), grid)
