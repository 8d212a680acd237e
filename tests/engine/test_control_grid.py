import pytest
import torch

from medfeat.engine.control_grid import ControlGrid, bspline3, evaluate

KINDS = ["cubic-bspline", "linear"]


def node_positions(grid: ControlGrid, axis: int) -> torch.Tensor:
    pad = 1 if grid.interpolation == "cubic-bspline" else 0
    return (torch.arange(grid.nodes[axis], dtype=torch.float64) - pad) * grid.spacing_vox[axis]


@pytest.mark.parametrize("kind", KINDS)
def test_nodes_cover_the_grid_with_non_integer_spacing(kind):
    grid = ControlGrid((20, 9, 31), (3.7, 2.5, 10.0), kind)
    for axis, n in enumerate(grid.shape):
        pos = node_positions(grid, axis)
        support = 2 if kind == "cubic-bspline" else 1
        # every voxel has nodes on both sides of it, as far as the kernel reaches
        assert pos[support - 1] <= 0 and pos[-support] >= n - 1
        assert pos[-support - 1] < n - 1  # and no node more than needed


@pytest.mark.parametrize("kind", KINDS)
def test_constant_and_linear_displacements_are_reproduced(kind):
    """Partition of unity and linear reproduction, at voxels, between voxels and beyond the
    grid (clamped there), for node spacings that are not whole voxels."""
    grid = ControlGrid((12, 10, 14), (3.3, 2.5, 4.1), kind)
    positions = [torch.linspace(-2.0, n + 1.0, 17, dtype=torch.float64) for n in grid.shape]
    bases = grid.bases(positions)
    constant = torch.ones((1, 3, *grid.nodes), dtype=torch.float64) * 2.5
    torch.testing.assert_close(
        evaluate(constant, bases), torch.full((1, 3, 17, 17, 17), 2.5, dtype=torch.float64)
    )

    # node value = node position along axis a: the field is the (clamped) position itself
    nodes = torch.zeros((1, 3, *grid.nodes), dtype=torch.float64)
    for a in range(3):
        view = [1] * 3
        view[a] = -1
        nodes[0, a] = node_positions(grid, a).view(view).expand(grid.nodes)
    out = evaluate(nodes, bases)
    for a, n in enumerate(grid.shape):
        expected = positions[a].clamp(0, n - 1)
        view = [1] * 3
        view[a] = -1
        torch.testing.assert_close(out[0, a], expected.view(view).expand(17, 17, 17))


def test_linear_interpolates_node_values_exactly():
    grid = ControlGrid((9, 9, 9), (4.0, 4.0, 4.0), "linear")
    nodes = torch.randn((1, 2, *grid.nodes), dtype=torch.float64)
    dense = evaluate(nodes, grid.dense_bases(dtype=torch.float64))
    torch.testing.assert_close(dense[:, :, ::4, ::4, ::4], nodes)


def test_bspline_kernel_values_and_gradient_flow():
    t = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, -1.0])
    torch.testing.assert_close(
        bspline3(t), torch.tensor([2 / 3, 23 / 48, 1 / 6, 1 / 48, 0.0, 1 / 6])
    )
    grid = ControlGrid((10, 11, 12), (3.0, 3.0, 3.0))
    nodes = grid.zeros().requires_grad_()
    evaluate(nodes, grid.dense_bases())[:, 0, 5, 5, 5].sum().backward()
    touched = (nodes.grad[0, 0] != 0).sum().item()
    assert touched == 4**3  # a cubic B-spline voxel depends on 4 nodes per axis
    assert torch.allclose(nodes.grad.sum(), torch.tensor(1.0))


def test_bad_arguments():
    with pytest.raises(ValueError, match="interpolation"):
        ControlGrid((4, 4, 4), (2.0, 2.0, 2.0), "quadratic")
    with pytest.raises(ValueError, match="positive"):
        ControlGrid((4, 4, 4), (2.0, 0.0, 2.0))
