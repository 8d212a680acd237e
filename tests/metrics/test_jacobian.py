import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medfeat.errors import GeometryError
from medfeat.geometry import DisplacementField, Grid
from medfeat.metrics import folding_pct, jacobian_determinant_mm, sdlogj


def rotation(ax, ay, az):
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    return (
        np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
        @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    )


def affine_field(grid: Grid, a: np.ndarray, t: np.ndarray) -> DisplacementField:
    """u(x) = (A - I) x + t on every voxel of ``grid``."""
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in grid.shape], indexing="ij"), -1).reshape(
        -1, 3
    )
    world = grid.array_index_to_world(idx)
    u = world @ (a - np.eye(3)).T + t
    return DisplacementField(np.moveaxis(u.reshape(*grid.shape, 3), -1, 0), grid)


angles = st.floats(-np.pi, np.pi)
spacing = st.floats(0.3, 4.0)
entries = st.floats(-0.6, 0.6)


@settings(max_examples=40, deadline=None)
@given(
    rot=st.tuples(angles, angles, angles),
    sp=st.tuples(spacing, spacing, spacing),
    origin=st.tuples(*[st.floats(-100, 100)] * 3),
    perturb=st.lists(entries, min_size=9, max_size=9),
    flip=st.booleans(),
)
def test_affine_field_has_constant_det_equal_to_det_a(rot, sp, origin, perturb, flip):
    direction = rotation(*rot)
    if flip:
        direction[:, 2] *= -1
    grid = Grid((5, 6, 7), sp, origin, direction)
    a = np.eye(3) + np.asarray(perturb).reshape(3, 3)
    det = jacobian_determinant_mm(affine_field(grid, a, np.array([1.0, -2.0, 3.0])))
    assert det.shape == grid.shape
    np.testing.assert_allclose(det, np.linalg.det(a), rtol=1e-7, atol=1e-7)


def test_identity_and_folding_metrics():
    grid = Grid((4, 5, 6), (1.0, 2.0, 3.0), (0, 0, 0), rotation(0.1, 0.2, 0.3))
    ident = DisplacementField(np.zeros((3, *grid.shape)), grid)
    assert np.allclose(jacobian_determinant_mm(ident), 1.0)
    assert sdlogj(ident) == pytest.approx(0.0)
    assert folding_pct(ident) == 0.0
    mirror = affine_field(grid, np.diag([-1.0, 1.0, 1.0]), np.zeros(3))
    assert folding_pct(mirror) == 100.0
    det = np.ones(grid.shape)
    det[0] = -1.0
    mask = np.zeros(grid.shape, bool)
    mask[1:] = True
    assert folding_pct(det) == pytest.approx(25.0)
    assert folding_pct(det, mask) == 0.0
    assert sdlogj(det) == pytest.approx(np.std(np.log(np.clip(det, 1e-9, 1e9)).ravel()))
    with pytest.raises(GeometryError, match="Mask"):
        sdlogj(det, np.ones((2, 2, 2), bool))


def test_voxel_units_are_converted():
    # stretch of 10 % along the i axis given in voxel units on an anisotropic grid -> det 1.1
    grid = Grid.from_shape((4, 5, 6), spacing=(2.5, 1.0, 0.5))
    vox = np.zeros((3, *grid.shape))
    vox[2] = 0.1 * np.arange(6)[None, None, :]  # numpy-order component 2 = i
    det = jacobian_determinant_mm(DisplacementField.from_array_voxels(vox, grid))
    np.testing.assert_allclose(det, 1.1)
