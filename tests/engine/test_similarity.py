import pytest
import torch

from medfeat.engine import similarity as S

LOSSES = [S.ssd, S.ncc, S.local_ncc, S.cosine, S.nmi]


@pytest.mark.parametrize("loss", LOSSES)
def test_identical_inputs_are_minimal(loss):
    a = torch.rand(1, 2, 12, 12, 12) + 0.1
    other = torch.rand(1, 2, 12, 12, 12) + 0.1
    same = loss(a, a)
    assert same.dim() == 0
    assert same <= loss(a, other) - 1e-3
    if loss is not S.nmi:  # Parzen blur keeps the joint entropy above the marginal one
        assert abs(float(same)) < 1e-3


@pytest.mark.parametrize("loss", LOSSES)
def test_mask_restricts_the_comparison(loss):
    a = torch.rand(1, 2, 10, 10, 10)
    b = a.clone()
    b[..., 5:] = torch.rand(1, 2, 10, 10, 5)
    mask = torch.zeros(1, 1, 10, 10, 10)
    mask[..., :4] = 1
    assert loss(a, b, mask) < loss(a, b)


@pytest.mark.parametrize("loss", LOSSES)
def test_differentiable(loss):
    a = torch.rand(1, 2, 8, 8, 8)
    b = torch.rand(1, 2, 8, 8, 8, requires_grad=True)
    loss(a, b).backward()
    assert b.grad is not None and torch.isfinite(b.grad).all()


def test_ncc_invariant_to_affine_intensity():
    a = torch.rand(1, 1, 10, 10, 10)
    assert S.ncc(a, 3 * a + 1) < 1e-4
    assert S.local_ncc(a, 3 * a + 1, window=5) < 1e-3
    assert S.ncc(a, -a) > 1.9
