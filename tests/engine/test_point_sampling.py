"""The analytic-gradient point sampler agrees with autograd through the generic gather."""

import pytest
import torch

from medfeat.engine.point_sampling import sample_fixed_volume
from medfeat.engine.warp import trilinear_points


def _autograd_reference(volume_cl, points):
    """trilinear_points' generic path (taken when the volume needs a gradient)."""
    return trilinear_points(volume_cl.detach().requires_grad_(True), points)


@pytest.mark.parametrize("shape", [(7, 5, 6), (1, 6, 5), (4, 1, 1)])
def test_values_and_point_gradient_match_autograd(shape):
    gen = torch.Generator().manual_seed(0)
    vol = torch.randn(*shape, 4, generator=gen, dtype=torch.float64)
    size = torch.tensor(shape, dtype=torch.float64)
    # inside, on the border and outside the grid (clamped: no gradient there)
    pts = torch.rand(200, 3, generator=gen, dtype=torch.float64) * (size + 2) - 1
    weights = torch.randn(200, 4, generator=gen, dtype=torch.float64)

    a = pts.clone().requires_grad_(True)
    out = sample_fixed_volume(vol, a)
    (out * weights).sum().backward()
    b = pts.clone().requires_grad_(True)
    ref = _autograd_reference(vol, b)
    (ref * weights).sum().backward()

    torch.testing.assert_close(out, ref.detach())
    torch.testing.assert_close(a.grad, b.grad)
    outside = (pts < 0) | (pts > size - 1)
    assert outside.any() and (~outside).any()  # both kinds of coordinate were exercised


def test_gradcheck_inside_the_grid():
    gen = torch.Generator().manual_seed(1)
    vol = torch.randn(5, 6, 7, 3, generator=gen, dtype=torch.float64)
    pts = (torch.rand(20, 3, generator=gen, dtype=torch.float64) * 3.6 + 0.2).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: sample_fixed_volume(vol, p), (pts,))


def test_float32_volume_with_float64_points():
    vol = torch.arange(2 * 3 * 4 * 2, dtype=torch.float32).reshape(2, 3, 4, 2)
    pts = torch.tensor([[0.5, 1.25, 2.5]], dtype=torch.float64, requires_grad=True)
    out = sample_fixed_volume(vol, pts)
    out.sum().backward()
    # linear in the index: value = 24 k + 8 j + 2 i + channel; the sum of both channels doubles it
    torch.testing.assert_close(out.detach(), torch.tensor([[27.0, 28.0]]))
    torch.testing.assert_close(pts.grad, torch.tensor([[48.0, 16.0, 4.0]], dtype=torch.float64))


def test_refuses_a_volume_that_needs_a_gradient():
    with pytest.raises(ValueError, match="must not require a gradient"):
        sample_fixed_volume(torch.zeros(2, 2, 2, 1, requires_grad=True), torch.zeros(1, 3))
