"""The benchmark's known deformation: its point mapping and its image warp agree."""

from __future__ import annotations

import numpy as np
import pytest
from benchmarks.aniso_deformation import (
    KnownDeformation,
    random_deformation,
    rotation_matrix,
    sample_on_grid,
)

from medfeat.geometry import Grid, Image

DIRECTION = rotation_matrix(np.array([10.0, -5.0, 20.0]))  # an oblique, right-handed frame


def _grid(shape=(24, 28, 32), spacing=(1.5, 1.2, 2.5)) -> Grid:
    centre = np.asarray(spacing) * (np.asarray(shape[::-1]) - 1) / 2
    return Grid(shape, spacing, tuple(-DIRECTION @ centre), DIRECTION)


def _deformation(grid: Grid, seed: int = 3) -> KnownDeformation:
    lo, hi = grid.world_extent()
    return random_deformation(
        seed, lo, hi, amplitude_mm=3.0, sigma_mm=12.0, max_rotation_deg=(4, 4, 4)
    )


def test_inverse_maps_back_exactly():
    grid = _grid()
    deformation = _deformation(grid)
    rng = np.random.default_rng(0)
    lo, hi = grid.world_extent()
    x = lo + (hi - lo) * rng.random((200, 3))
    y = deformation.fixed_to_moving(x)
    assert np.abs(deformation.moving_to_fixed(y) - x).max() < 1e-6
    assert np.linalg.norm(y - x, axis=1).max() > 1.0  # it does move the points


def test_warped_ramp_holds_the_mapped_fixed_value_at_every_voxel():
    """A linear ramp of world position is interpolated exactly, so voxel y of the warped image
    must hold ramp(psi(y)) - and psi(y) must map back to y."""
    grid = _grid()
    deformation = _deformation(grid)
    coeff = np.array([0.7, -1.3, 2.1])
    big = Grid((61, 61, 61), (2.0, 2.0, 2.0), (-60.0, -60.0, -60.0), np.eye(3))  # holds it all
    world = big.array_index_to_world(np.indices(big.shape).reshape(3, -1).T)
    source = Image((world @ coeff).reshape(big.shape), big)
    warped = sample_on_grid(source, grid, deformation, dtype=np.float64)
    y = grid.array_index_to_world(np.indices(grid.shape).reshape(3, -1).T)
    expected = deformation.moving_to_fixed(y) @ coeff
    assert np.abs(warped.numpy().reshape(-1) - expected).max() < 1e-6
    assert not np.allclose(warped.numpy().reshape(-1), y @ coeff, atol=0.5)


def test_a_fixed_landmark_lands_on_its_content_in_the_warped_image():
    """A blob around fixed point p appears around fixed_to_moving(p) in the moving image."""
    grid = _grid(shape=(40, 40, 40), spacing=(1.0, 1.0, 1.0))
    deformation = _deformation(grid, seed=5)
    p = np.array([[4.0, -3.0, 2.0]])
    world = grid.array_index_to_world(np.indices(grid.shape).reshape(3, -1).T)
    blob = np.exp(-((world - p) ** 2).sum(1) / (2 * 2.0**2)).reshape(grid.shape)
    moving = sample_on_grid(Image(blob, grid), grid, deformation).numpy().reshape(-1)
    weights = moving**4  # sharpen: the blob's centre, not its (slightly sheared) tails
    centre = (world * weights[:, None]).sum(0) / weights.sum()
    q = deformation.fixed_to_moving(p)[0]
    assert np.linalg.norm(centre - q) < 0.25
    assert np.linalg.norm(q - p[0]) > 1.5


def test_nearest_neighbour_keeps_label_values():
    grid = _grid(shape=(10, 12, 14))
    labels = Image(np.random.default_rng(1).integers(0, 5, grid.shape).astype(np.int16), grid)
    warped = sample_on_grid(labels, grid, _deformation(grid), order=0)
    assert warped.numpy().dtype == np.int16
    assert set(np.unique(warped.numpy())) <= set(range(5))


def test_random_deformation_is_seeded_and_scaled():
    lo, hi = np.array([-50.0, -40.0, -20.0]), np.array([50.0, 40.0, 20.0])
    a = random_deformation(7, lo, hi, amplitude_mm=4.0, sigma_mm=25.0)
    b = random_deformation(7, lo, hi, amplitude_mm=4.0, sigma_mm=25.0)
    c = random_deformation(8, lo, hi, amplitude_mm=4.0, sigma_mm=25.0)
    assert np.array_equal(a.rbf_amplitudes_mm, b.rbf_amplitudes_mm)
    assert not np.allclose(a.rbf_amplitudes_mm, c.rbf_amplitudes_mm)
    probe = np.stack(np.meshgrid(*[np.linspace(x, y, 15) for x, y in zip(lo, hi, strict=True)]), -1)
    peak = np.linalg.norm(a.displacement(probe.reshape(-1, 3)), axis=1).max()
    assert peak == pytest.approx(4.0, rel=1e-6)
    assert np.allclose(a.rotation @ a.rotation.T, np.eye(3))
    assert np.linalg.det(a.rotation) == pytest.approx(1.0)


def test_too_steep_a_deformation_is_refused():
    with pytest.raises(ValueError, match="too steep"):
        random_deformation(0, np.zeros(3), np.full(3, 40.0), amplitude_mm=20.0, sigma_mm=3.0)
