import numpy as np
import pytest

from medfeat.errors import GeometryError
from medfeat.geometry import DisplacementField, Grid


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


def test_field_from_voxels_on_an_oblique_anisotropic_grid_is_the_vector_map():
    from scipy.spatial.transform import Rotation

    direction = Rotation.from_euler("zyx", [20, -35, 50], degrees=True).as_matrix()
    grid = Grid((4, 5, 6), (0.7, 1.3, 2.5), (3.0, -1.0, 2.0), direction)
    vox = np.random.default_rng(0).normal(size=(3, 4, 5, 6)).astype(np.float32)
    f = DisplacementField.from_array_voxels(vox, grid)
    expected = grid.vector_array_to_world(np.moveaxis(vox, 0, -1))
    assert np.allclose(np.moveaxis(f.numpy(), 0, -1), expected, atol=1e-12)
    assert np.allclose(f.to_array_voxels(), vox, atol=1e-6)


def test_field_mapping_is_named_and_checked():
    grid = Grid.from_shape((3, 4, 5))
    field = DisplacementField(np.zeros((3, 3, 4, 5)), grid)
    assert field.mapping == "fixed_to_moving"
    assert (
        DisplacementField(field.data, grid, mapping="moving_to_fixed").mapping == "moving_to_fixed"
    )
    with pytest.raises(GeometryError, match="fixed_to_moving, moving_to_fixed"):
        DisplacementField(field.data, grid, mapping="forward")
