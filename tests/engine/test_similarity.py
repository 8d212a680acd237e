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


def _brute_local_ncc(a, b, window):
    """1 - mean local NCC with explicit loops over boxes clipped to the image (one channel)."""
    a, b = a[0, 0].double(), b[0, 0].double()
    r = [w // 2 for w in window]
    total = 0.0
    for k in range(a.shape[0]):
        for j in range(a.shape[1]):
            for i in range(a.shape[2]):
                box = tuple(
                    slice(max(0, c - h), min(n, c + h + 1))
                    for c, h, n in zip((k, j, i), r, a.shape, strict=True)
                )
                x, y = a[box], b[box]
                cov = (x * y).mean() - x.mean() * y.mean()
                var = ((x * x).mean() - x.mean() ** 2) * ((y * y).mean() - y.mean() ** 2)
                total += float(cov / torch.sqrt(var + 1e-10))
    return 1.0 - total / a.numel()


def test_local_ncc_per_axis_window_matches_explicit_boxes():
    torch.manual_seed(0)
    a, b = torch.rand(1, 1, 6, 7, 8), torch.rand(1, 1, 6, 7, 8)
    for window in ((3, 5, 7), (5, 3, 3), 3):
        sides = (window,) * 3 if isinstance(window, int) else window
        expected = _brute_local_ncc(a, b, sides)
        assert float(S.local_ncc(a, b, window=window)) == pytest.approx(expected, abs=1e-4)


def test_local_ncc_window_follows_its_axis():
    """Permuting the axes of the images and of the window gives the same loss."""
    a, b = torch.rand(1, 2, 9, 10, 11), torch.rand(1, 2, 9, 10, 11)
    value = S.local_ncc(a, b, window=(3, 5, 9))
    swapped = S.local_ncc(a.permute(0, 1, 4, 2, 3), b.permute(0, 1, 4, 2, 3), window=(9, 3, 5))
    assert torch.allclose(value, swapped, atol=1e-6)
    assert not torch.allclose(value, S.local_ncc(a, b, window=(9, 3, 5)), atol=1e-4)
    assert torch.allclose(S.local_ncc(a, b, window=(5, 5, 5)), S.local_ncc(a, b, window=5))


@pytest.mark.parametrize("window", [(3, 5), (3, 4, 5), 8, (3, -1, 3)])
def test_local_ncc_refuses_bad_windows(window):
    a = torch.rand(1, 1, 6, 6, 6)
    with pytest.raises(ValueError, match="window"):
        S.local_ncc(a, a, window=window)
