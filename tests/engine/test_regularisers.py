import torch

from medfeat.engine.regularisers import bending_energy, diffusion, inverse_consistency


def _linear_field(shape=(10, 11, 12)):
    grid = torch.stack(
        torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in shape], indexing="ij")
    )
    return grid[None]


def test_constant_field_has_zero_penalties():
    u = torch.ones(1, 3, 8, 8, 8) * torch.tensor([1.0, -2.0, 0.5]).view(1, 3, 1, 1, 1)
    assert diffusion(u) == 0
    assert bending_energy(u) == 0


def test_affine_field_has_zero_bending_but_positive_diffusion():
    u = 0.1 * _linear_field()
    assert bending_energy(u) < 1e-10
    # u_k = 0.1 k, ... : each of the three components has one unit gradient of 0.1 -> 3 * 0.01 / 3
    assert torch.isclose(diffusion(u), torch.tensor(0.01), atol=1e-6)


def test_diffusion_uses_physical_spacing():
    u = torch.zeros(1, 3, 6, 6, 6)
    u[:, 0] = torch.arange(6.0).view(6, 1, 1)  # du_k/dk = 1 voxel/voxel
    # anisotropic voxels: the displacement in mm over distance in mm stays 1 along k
    assert torch.isclose(diffusion(u, (3.0, 1.0, 1.0)), diffusion(u))
    assert torch.isclose(diffusion(u, (1.0, 2.0, 2.0)), diffusion(u))


def test_quadratic_field_bending():
    x = _linear_field((9, 9, 9))[0, 2]
    u = torch.zeros(1, 3, 9, 9, 9)
    u[0, 2] = 0.5 * x**2  # u_xx = 1 everywhere (interior)
    assert 0.5 < bending_energy(u) <= 1.0 + 1e-5


def test_inverse_consistency_zero_for_exact_inverse_translation():
    fwd = torch.ones(1, 3, 8, 8, 8) * 0.5
    assert inverse_consistency(fwd, -fwd) < 1e-10
    assert inverse_consistency(fwd, fwd) > 0.5
