import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from medfeat.errors import ConfigError
from medfeat.geometry import Grid, Image
from medfeat.geometry.sampling import resample_tensor
from medfeat.io.resample import resample_to_grid


def rotation(a: float, b: float, c: float) -> np.ndarray:
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


SOURCE = Grid((14, 17, 15), (1.3, 0.9, 2.1), (-4.0, 3.0, 7.0), rotation(0.3, -0.2, 0.5))


def target_grids():
    """Oblique, anisotropic grids that overlap SOURCE (centred near its middle)."""
    centre = SOURCE.array_index_to_world(np.array([[6.5, 8.0, 7.0]]))[0]

    def build(shape, spacing, angles, shift):
        g = Grid(shape, spacing, (0.0, 0.0, 0.0), rotation(*angles))
        middle = g.array_index_to_world((np.array(shape)[None] - 1) / 2.0)[0]
        return Grid(shape, spacing, tuple(centre - middle + np.asarray(shift)), g.direction)

    return st.builds(
        build,
        st.tuples(*[st.integers(3, 12)] * 3),
        st.tuples(*[st.floats(0.5, 3.0)] * 3),
        st.tuples(*[st.floats(-np.pi, np.pi)] * 3),
        st.tuples(*[st.floats(-6.0, 6.0)] * 3),
    )


def inside(source: Grid, target: Grid) -> np.ndarray:
    """Target voxels whose position lies within source's voxel centres (numpy order mask)."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in target.shape], indexing="ij"), -1)
    pos = target.transform(idx.reshape(-1, 3), "array", "array", to=source)
    ok = np.all((pos >= 1e-6) & (pos <= np.asarray(source.shape) - 1 - 1e-6), axis=1)
    assert ok.any()
    return ok.reshape(target.shape)


DATA = np.random.default_rng(0).normal(size=SOURCE.shape)


@settings(max_examples=25, deadline=None)
@given(target_grids())
def test_linear_resampling_agrees_with_simpleitk_on_oblique_grids(target):
    ours = resample_tensor(torch.from_numpy(DATA)[None], SOURCE, target)[0].numpy()
    itk = resample_to_grid(Image(DATA, SOURCE), target, "linear").numpy()
    mask = inside(SOURCE, target)
    assert np.allclose(ours[mask], itk[mask], atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(target_grids())
def test_nearest_resampling_agrees_with_simpleitk_on_oblique_grids(target):
    labels = np.arange(DATA.size, dtype=np.int32).reshape(SOURCE.shape)
    ours = resample_tensor(torch.from_numpy(labels)[None], SOURCE, target, "nearest")[0]
    itk = resample_to_grid(Image(labels, SOURCE), target, "nearest").numpy()
    mask = inside(SOURCE, target)
    assert ours.dtype == torch.float32  # integer data is sampled as float32
    assert np.array_equal(ours.numpy().astype(np.int64)[mask], itk[mask])


def test_padding_outside_the_source():
    far = Grid(SOURCE.shape, SOURCE.spacing, (500.0, 500.0, 500.0), SOURCE.direction)
    data = torch.from_numpy(DATA)[None]
    assert torch.equal(
        resample_tensor(data, SOURCE, far), torch.zeros(1, *far.shape, dtype=data.dtype)
    )
    border = resample_tensor(data, SOURCE, far, padding="border")
    assert border.abs().sum() > 0


def test_own_grid_is_the_identity_in_2d_and_3d_with_batches():
    grid2 = Grid((9, 11), (0.7, 1.9), (3.0, -2.0), rotation(0, 0, 0.8)[:2, :2])
    data2 = torch.rand(2, 3, *grid2.shape, dtype=torch.float64)
    assert torch.allclose(resample_tensor(data2, grid2, grid2), data2, atol=1e-12)
    data3 = torch.rand(4, *SOURCE.shape, dtype=torch.float64)
    assert torch.allclose(resample_tensor(data3, SOURCE, SOURCE, "nearest"), data3)


def test_refuses_unknown_modes_and_mismatched_data():
    data = torch.zeros(1, *SOURCE.shape)
    with pytest.raises(ConfigError, match="linear, nearest"):
        resample_tensor(data, SOURCE, SOURCE, mode="bilinear")
    with pytest.raises(ConfigError, match="zeros, border"):
        resample_tensor(data, SOURCE, SOURCE, padding="reflection")
    with pytest.raises(ConfigError, match="source.shape"):
        resample_tensor(torch.zeros(1, 3, 3, 3), SOURCE, SOURCE)
