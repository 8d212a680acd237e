import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medfeat.errors import GeometryError
from medfeat.geometry import DisplacementField, Grid
from medfeat.metrics import folding_pct, jacobian_determinant_mm, sdlogj
from medfeat.metrics import jacobian as jac_module


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
    field = affine_field(grid, a, np.array([1.0, -2.0, 3.0]))
    det = jacobian_determinant_mm(field, dtype=np.float64)
    assert det.shape == grid.shape and det.dtype == np.float64
    np.testing.assert_allclose(det, np.linalg.det(a), rtol=1e-7, atol=1e-7)
    det32 = jacobian_determinant_mm(field)
    assert det32.dtype == np.float32
    np.testing.assert_allclose(det32, np.linalg.det(a), rtol=2e-7, atol=2e-7)


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


def reference_determinant(field: DisplacementField) -> np.ndarray:
    """The former implementation (nested np.gradient stacks, batched np.linalg.det), kept as the
    reference the slab-wise determinant must reproduce."""
    grid, u = field.grid, field.numpy()
    n = grid.ndim
    grads = np.stack([np.stack(np.gradient(u[c]), axis=-1)[..., ::-1] for c in range(n)], axis=-2)
    index_per_world = np.linalg.inv(grid.direction @ np.diag(grid.spacing))
    return np.linalg.det(grads @ index_per_world + np.eye(n))


@settings(max_examples=30, deadline=None)
@given(
    rot=st.tuples(angles, angles, angles),
    sp=st.tuples(spacing, spacing, spacing),
    shape=st.tuples(*[st.integers(2, 9)] * 3),
    flip=st.booleans(),
    slab=st.sampled_from([1, 7, 40, 1 << 17]),
    seed=st.integers(0, 2**16),
)
def test_matches_the_former_formula_on_random_rotated_anisotropic_grids(
    rot, sp, shape, flip, slab, seed, monkeypatch_module
):
    direction = rotation(*rot)
    if flip:
        direction[:, 0] *= -1
    grid = Grid(shape, sp, (10.0, -20.0, 5.0), direction)
    rng = np.random.default_rng(seed)
    # float32 values, as written fields hold; large enough to fold some voxels
    u = (rng.normal(0.0, 0.6, (3, *shape)) * np.asarray(sp).mean()).astype(np.float32)
    field = DisplacementField(u.astype(np.float64), grid)
    monkeypatch_module.setattr(jac_module, "SLAB_VOXELS", slab)
    expected = reference_determinant(field)
    det64 = jacobian_determinant_mm(field, dtype=np.float64)
    np.testing.assert_allclose(det64, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())
    det = jacobian_determinant_mm(DisplacementField(u, grid))  # float32 data, float32 result
    scale = np.maximum(np.abs(expected), 1.0)
    assert np.max(np.abs(det - expected) / scale) < 1e-6
    assert np.array_equal(det <= 0, expected <= 0) or np.min(np.abs(expected)) < 1e-6
    assert sdlogj(det) == pytest.approx(sdlogj(expected), rel=1e-6, abs=1e-9)
    assert folding_pct(det) == folding_pct(field) == pytest.approx(folding_pct(expected))


def test_2d_field_matches_the_former_formula():
    grid = Grid((9, 12), (0.8, 2.5), (3.0, -4.0), [[0.6, 0.8], [0.8, -0.6]])
    u = np.random.default_rng(3).normal(0.0, 1.0, (2, 9, 12))
    field = DisplacementField(u, grid)
    np.testing.assert_allclose(
        jacobian_determinant_mm(field, dtype=np.float64), reference_determinant(field), rtol=1e-12
    )


def test_an_axis_of_one_voxel_has_no_derivative():
    # a single slice stored as 3D: stretch 20 % along x (the i axis), nothing along k
    grid = Grid.from_shape((1, 5, 6), spacing=(3.0, 1.0, 2.0))  # (i, j, k) spacing
    u = np.zeros((3, *grid.shape))
    u[0] = 0.2 * grid.spacing[0] * np.arange(6)[None, None, :]
    det = jacobian_determinant_mm(DisplacementField(u, grid))
    assert det.shape == grid.shape
    np.testing.assert_allclose(det, 1.2, rtol=1e-6)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp
