"""medfeat.io.relate: whether two images can be related in world space."""

import numpy as np
import pytest

from medfeat.errors import GeometryError
from medfeat.geometry import Grid, Image
from medfeat.io import check_geometry_relatable


def test_check_geometry_relatable(grid, image):
    assert check_geometry_relatable(image, image) == pytest.approx(1.0)
    far = Image(image.data, Grid(grid.shape, grid.spacing, (500.0, 0.0, 0.0), grid.direction))
    with pytest.raises(GeometryError, match="do not overlap") as err:
        check_geometry_relatable(image, far)
    assert "prealignment" in str(err.value) and grid.describe() in str(err.value)
    flat = Image(np.zeros((4, 4)), Grid.from_shape((4, 4)))
    with pytest.raises(GeometryError, match="3D .* 2D"):
        check_geometry_relatable(image, flat)
    half = Image(
        image.data,
        Grid(grid.shape, grid.spacing, tuple(np.add(grid.origin, [3, 0, 0])), grid.direction),
    )
    frac = check_geometry_relatable(image, half)
    assert 0 < frac < 1
    with pytest.raises(GeometryError):
        check_geometry_relatable(image, half, min_overlap=0.999)
