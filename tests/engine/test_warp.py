import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from medfeat.engine.warp import (
    compose,
    identity_grid,
    invert_fixed_point,
    jacobian_determinant_vox,
    resize_field,
    sample,
    sample_points,
    trilinear_points,
    voxel_to_normalised,
    warp,
)
from medfeat.geometry import DisplacementField, Grid
from medfeat.metrics.jacobian import jacobian_determinant_mm


def _smooth_field(shape, amplitude, seed, limit=1.2):
    """Random smooth field with |u| <= limit voxels (interior samples stay inside the grid)."""
    g = torch.Generator().manual_seed(seed)
    coarse = (torch.randn(1, 3, 3, 3, 3, generator=g) * amplitude).clamp(-limit, limit)
    return torch.nn.functional.interpolate(coarse, size=shape, mode="trilinear", align_corners=True)


INNER = (slice(None), slice(None), slice(4, -4), slice(4, -4), slice(4, -4))


def test_identity_grid_values():
    g = identity_grid((2, 3, 4))
    assert g.shape == (1, 3, 2, 3, 4)
    assert g[0, :, 1, 2, 3].tolist() == [1.0, 2.0, 3.0]


def test_warp_with_zero_field_is_identity():
    img = torch.rand(2, 3, 7, 8, 9)
    zero = torch.zeros(2, 3, 7, 8, 9)
    assert torch.allclose(warp(img, zero), img, atol=1e-6)
    assert torch.equal(warp(img, zero, mode="nearest"), img)


def test_integer_translation_convention():
    img = torch.rand(1, 1, 10, 10, 10)
    u = torch.zeros(1, 3, 10, 10, 10)
    u[:, 0], u[:, 2] = 2.0, -1.0  # warped(x) = img(x + (2, 0, -1))
    out = warp(img, u, mode="nearest")
    assert torch.equal(out[0, 0, :8, :, 1:], img[0, 0, 2:, :, :9])


def test_sample_points_matches_trilinear_points():
    img = torch.rand(1, 4, 6, 7, 8)
    pts = torch.rand(50, 3) * torch.tensor([5.0, 6.0, 7.0])
    a = sample_points(img, pts)
    b = trilinear_points(img[0].permute(1, 2, 3, 0).contiguous(), pts)
    assert torch.allclose(a, b, atol=1e-5)


def test_jacobian_of_identity_is_one():
    zero = torch.zeros(1, 3, 6, 7, 8)
    assert torch.allclose(jacobian_determinant_vox(zero), torch.ones(1, 6, 7, 8))


def test_jacobian_of_uniform_scaling():
    g = identity_grid((8, 8, 8))
    u = 0.1 * g  # x -> 1.1 x
    expected = torch.full((1, 8, 8, 8), 1.1**3)
    assert torch.allclose(jacobian_determinant_vox(u), expected, atol=1e-5)


def test_voxel_and_mm_jacobians_agree_on_an_anisotropic_oblique_grid():
    """The voxel-unit determinant equals the world-mm metric of the same map, whatever the grid."""
    c, s = np.cos(0.4), np.sin(0.4)
    grid = Grid((6, 7, 8), (0.7, 1.3, 2.5), (3.0, -1.0, 2.0), [[c, -s, 0], [s, c, 0], [0, 0, 1]])
    g = identity_grid(grid.shape, dtype=torch.float64)
    u = 0.1 * g.flip(1) * torch.tensor([1.0, -0.5, 0.3], dtype=torch.float64).view(1, 3, 1, 1, 1)
    det_vox = jacobian_determinant_vox(u)[0].numpy()
    det_mm = jacobian_determinant_mm(DisplacementField.from_array_voxels(u[0], grid))
    assert np.allclose(det_vox, det_mm)
    assert not np.allclose(det_vox, 1.0)


def test_voxel_to_normalised_is_the_grid_sample_convention():
    shape = (4, 5, 6)
    coords = identity_grid(shape)
    norm = voxel_to_normalised(coords, shape)
    assert norm.shape == (1, 4, 5, 6, 3)
    # corners of the grid are the corners of grid_sample's cube, in (x, y, z) = (i, j, k) order
    assert norm[0, 0, 0, 0].tolist() == [-1.0, -1.0, -1.0]
    assert norm[0, -1, 0, -1].tolist() == [1.0, -1.0, 1.0]
    img = torch.rand(1, 2, *shape)
    assert torch.allclose(sample(img, coords), img, atol=1e-6)


def test_resize_field_round_trip_of_constant_and_linear():
    u = torch.ones(1, 3, 4, 4, 4) * 1.5
    up = resize_field(u, 2.0, (8, 8, 8))
    assert torch.allclose(up, torch.full_like(up, 3.0))
    g = identity_grid((16, 16, 16))
    coarse = resize_field(0.1 * g, 0.5, (8, 8, 8))
    back = resize_field(coarse, 2.0, (16, 16, 16))
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1), slice(1, -1))
    assert torch.allclose(back[inner], (0.1 * g)[inner], atol=1e-5)


@pytest.mark.parametrize("factor", [2.0, 4.0, 6.0, 3.0, 0.5, 0.25])
def test_resize_field_follows_the_avg_pool_formula(factor):
    """Coarse voxel ``c`` sits at ``(c + 0.5) * factor - 0.5`` (avg_pool's voxel corners), border
    values beyond the outer centres, also where the shape is not a multiple of the factor."""
    shape = (9, 12, 10)
    coarse_shape = tuple(max(1, round(n / factor)) for n in shape)
    u = torch.randn(2, 3, *coarse_shape, generator=torch.Generator().manual_seed(1))
    coords = ((identity_grid(shape, dtype=torch.float64) + 0.5) / factor - 0.5).expand(
        2, -1, -1, -1, -1
    )
    expected = (sample(u.double(), coords, padding_mode="border") * factor).float()
    torch.testing.assert_close(resize_field(u, factor, shape), expected, atol=1e-5, rtol=1e-5)


@settings(max_examples=15, deadline=None)
@given(
    shift=st.tuples(*[st.floats(-2.0, 2.0, allow_nan=False) for _ in range(3)]),
    other=st.tuples(*[st.floats(-2.0, 2.0, allow_nan=False) for _ in range(3)]),
)
def test_compose_of_translations_adds(shift, other):
    a = torch.tensor(shift).view(1, 3, 1, 1, 1).expand(1, 3, 6, 6, 6)
    b = torch.tensor(other).view(1, 3, 1, 1, 1).expand(1, 3, 6, 6, 6)
    assert torch.allclose(compose(a, b), a + b, atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(amplitude=st.floats(0.0, 2.0), seed=st.integers(0, 10_000))
def test_compose_matches_sequential_warping(amplitude, seed):
    shape = (16, 16, 16)
    a = _smooth_field(shape, amplitude, seed)
    b = _smooth_field(shape, amplitude, seed + 1)
    # a linear image is warped exactly by trilinear interpolation (inside the grid)
    img = identity_grid(shape).sum(1, keepdim=True)
    direct = warp(img, compose(a, b))
    sequential = warp(warp(img, b), a)
    assert torch.allclose(direct[INNER], sequential[INNER], atol=1e-3)


@settings(max_examples=8, deadline=None)
@given(amplitude=st.floats(0.0, 2.0), seed=st.integers(0, 10_000))
def test_fixed_point_inverse(amplitude, seed):
    shape = (16, 16, 16)
    u = _smooth_field(shape, amplitude, seed)
    inv = invert_fixed_point(u, iterations=30)
    # defining property x + v(x) + u(x + v(x)) = x (the converse holds up to interpolation)
    assert compose(inv, u)[INNER].abs().max() < 1e-3


@settings(max_examples=10, deadline=None)
@given(amplitude=st.floats(0.0, 0.5), seed=st.integers(0, 10_000))
def test_small_smooth_fields_do_not_fold(amplitude, seed):
    u = _smooth_field((10, 10, 10), amplitude, seed)
    assert (jacobian_determinant_vox(u) > 0).all()
