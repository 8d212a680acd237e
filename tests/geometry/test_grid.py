import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medfeat.errors import GeometryError
from medfeat.geometry import Grid
from medfeat.geometry.grid import SPACES


def rotation(angles):
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


grids = st.builds(
    lambda shape, spacing, origin, angles: Grid(shape, spacing, origin, rotation(angles)),
    st.tuples(*[st.integers(2, 40)] * 3),
    st.tuples(*[st.floats(0.3, 5.0)] * 3),
    st.tuples(*[st.floats(-200, 200)] * 3),
    st.tuples(*[st.floats(-np.pi, np.pi)] * 3),
)
index_points = st.lists(st.tuples(*[st.floats(-5, 45)] * 3), min_size=1, max_size=5).map(np.array)


@settings(max_examples=50, deadline=None)
@given(grids, st.lists(st.tuples(*[st.floats(-5, 45)] * 3), min_size=1, max_size=5))
def test_index_world_round_trip(grid, idx):
    idx = np.array(idx)
    assert np.allclose(grid.world_to_index(grid.index_to_world(idx)), idx, atol=1e-6)
    # numpy-order indices are the reverse of ITK indices
    assert np.allclose(grid.array_index_to_world(idx[:, ::-1]), grid.index_to_world(idx))


@settings(max_examples=50, deadline=None)
@given(grids, st.tuples(*[st.floats(-10, 10)] * 3))
def test_vectors_round_trip_and_match_points(grid, vec):
    v = np.array(vec)
    assert np.allclose(grid.vector_world_to_array(grid.vector_array_to_world(v)), v, atol=1e-8)
    # a voxel-unit displacement moves a point by the same world vector as the index difference
    p0 = np.array([[1.0, 2.0, 3.0]])
    assert np.allclose(
        grid.array_index_to_world(p0 + v) - grid.array_index_to_world(p0),
        grid.vector_array_to_world(v),
    )


@settings(max_examples=30, deadline=None)
@given(grids, st.tuples(*[st.integers(2, 50)] * 3))
def test_resized_grid_keeps_physical_box(grid, new_shape):
    new = grid.resized(new_shape)
    # the box spanned by voxel edges is the same
    half_old = grid.direction @ (np.array(grid.spacing) / 2)
    half_new = new.direction @ (np.array(new.spacing) / 2)
    assert np.allclose(
        grid.index_to_world(np.zeros((1, 3)))[0] - half_old,
        new.index_to_world(np.zeros((1, 3)))[0] - half_new,
        atol=1e-6,
    )
    far_old = grid.index_to_world(np.array(grid.size_ijk)[None] - 1)[0] + half_old
    far_new = new.index_to_world(np.array(new.size_ijk)[None] - 1)[0] + half_new
    assert np.allclose(far_old, far_new, atol=1e-6)


def test_itk_convention_matches_simpleitk():
    sitk = pytest.importorskip("SimpleITK")
    img = sitk.Image(7, 5, 3, sitk.sitkFloat32)
    img.SetSpacing((0.7, 1.3, 2.5))
    img.SetOrigin((10.0, -4.0, 3.0))
    img.SetDirection(rotation((0.3, -0.2, 1.1)).flatten().tolist())
    grid = Grid(
        sitk.GetArrayViewFromImage(img).shape,
        img.GetSpacing(),
        img.GetOrigin(),
        np.array(img.GetDirection()),
    )
    assert grid.shape == (3, 5, 7)
    idx = (2.5, 1.25, 0.5)
    assert np.allclose(
        grid.index_to_world(np.array([idx]))[0], img.TransformContinuousIndexToPhysicalPoint(idx)
    )


def test_invalid_grids_are_refused():
    with pytest.raises(GeometryError, match="positive"):
        Grid.from_shape((4, 4, 4), spacing=(1, 0, 1))
    with pytest.raises(GeometryError, match="orthonormal"):
        Grid.from_shape((4, 4, 4), direction=np.ones((3, 3)))
    with pytest.raises(GeometryError, match="2D or 3D"):
        Grid.from_shape((4,))


@settings(max_examples=50, deadline=None)
@given(grids, index_points, st.sampled_from(SPACES), st.sampled_from(SPACES))
def test_any_space_round_trips_through_any_other(grid, idx, source, target):
    points = grid.transform(idx, "index", source)
    there = grid.transform(points, source, target)
    assert np.allclose(grid.transform(there, target, source), points, atol=1e-6)
    assert np.allclose(grid.transform(there, target, "index"), idx, atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(grids, grids, index_points)
def test_two_grids_meet_in_world_space(grid, other, idx):
    world = grid.index_to_world(idx)
    # this grid's index -> the other grid's cube is the same as going through world mm
    direct = grid.transform(idx, "index", "cube", to=other)
    assert np.allclose(direct, other.transform(world, "world", "cube"), atol=1e-6)
    assert np.allclose(other.cube_to_index(direct), other.world_to_index(world), atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(grids, index_points)
def test_named_spaces_match_the_explicit_methods(grid, idx):
    assert np.allclose(grid.transform(idx, "index", "world"), grid.index_to_world(idx))
    world = grid.index_to_world(idx)
    assert np.allclose(grid.transform(world, "world", "index"), grid.world_to_index(world))
    assert np.allclose(grid.transform(idx, "index", "array"), idx[:, ::-1])
    assert np.allclose(grid.transform(idx, "index", "cube"), grid.index_to_cube(idx))
    assert np.allclose(grid.array_index_to_cube(idx[:, ::-1]), grid.index_to_cube(idx))
    assert np.allclose(grid.cube_to_array_index(grid.index_to_cube(idx)), idx[:, ::-1])


def test_cube_is_grid_sample_align_corners_true():
    grid = Grid.from_shape((3, 5, 9), spacing=(0.5, 2.0, 1.0))  # numpy (k, j, i): 9 i, 5 j, 3 k
    corners = np.array([[0, 0, 0], [8, 4, 2], [4, 2, 1]])  # ITK (i, j, k)
    assert np.allclose(grid.index_to_cube(corners), [[-1, -1, -1], [1, 1, 1], [0, 0, 0]])
    # grid_sample's x axis is the last numpy axis (i)
    assert np.allclose(grid.array_index_to_cube(np.array([[0, 0, 8]])), [[1, -1, -1]])


def test_cube_of_own_voxels_samples_the_identity_with_grid_sample():
    torch = pytest.importorskip("torch")
    c, s = np.cos(0.7), np.sin(0.7)
    grid = Grid((5, 6, 7), (0.8, 1.1, 2.4), (4.0, -2.0, 9.0), [[c, 0, s], [0, 1, 0], [-s, 0, c]])
    axes = [torch.arange(n, dtype=torch.float64) for n in grid.shape]
    index = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
    cube = grid.array_index_to_cube(index)
    assert cube.dtype == torch.float64
    assert np.allclose(cube.numpy(), grid.array_index_to_cube(index.numpy()))
    assert torch.allclose(grid.cube_to_array_index(cube), index)
    data = torch.rand(1, 2, *grid.shape, dtype=torch.float64)
    for mode in ("bilinear", "nearest"):
        out = torch.nn.functional.grid_sample(data, cube[None], mode=mode, align_corners=True)
        assert torch.allclose(out, data, atol=1e-12)


def test_unknown_space_is_refused_with_the_names():
    with pytest.raises(GeometryError, match="world, index, array, cube"):
        Grid.from_shape((4, 4, 4)).transform(np.zeros((1, 3)), "voxel", "world")
