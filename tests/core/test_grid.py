import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medfeat.errors import GeometryError
from medfeat.geometry import DisplacementField, Grid


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


def test_field_from_voxels_and_point_transform():
    grid = Grid((4, 5, 6), (2.0, 1.0, 0.5), (0, 0, 0), np.diag([1.0, -1.0, -1.0]))
    vox = np.zeros((3, 4, 5, 6))
    vox[0] = 1.0  # +1 voxel along numpy axis 0 = ITK k = world -z (direction) * 0.5 mm
    f = DisplacementField.from_array_voxels(vox, grid)
    assert np.allclose(f.numpy()[:, 0, 0, 0], [0, 0, -0.5])
    assert np.allclose(f.to_array_voxels(), vox)
    p = grid.array_index_to_world(np.array([[1.0, 2.0, 3.0]]))
    assert np.allclose(
        f.transform_points(p), grid.array_index_to_world(np.array([[2.0, 2.0, 3.0]]))
    )
