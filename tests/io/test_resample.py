import numpy as np
import pytest

from medfeat.errors import ConfigError, GeometryError
from medfeat.geometry import DisplacementField, Grid, Image
from medfeat.io import resample_to_grid, warp_image


def linear_image(grid: Grid, coef=(0.5, -1.0, 2.0), offset=3.0) -> Image:
    """Intensity = a linear function of world position, so linear interpolation is exact."""
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in grid.size_ijk], indexing="ij"), -1).reshape(
        -1, 3
    )
    world = grid.index_to_world(idx)
    values = (world @ np.asarray(coef) + offset).reshape(grid.size_ijk)
    return Image(np.transpose(values, (2, 1, 0)).astype(np.float64), grid)


def world_of(grid: Grid) -> np.ndarray:
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in grid.size_ijk], indexing="ij"), -1).reshape(
        -1, 3
    )
    return grid.index_to_world(idx), idx


def test_resample_onto_own_grid_is_identity(image):
    out = resample_to_grid(image, image.grid, "nearest")
    np.testing.assert_array_equal(out.numpy(), image.numpy())
    assert out.grid.same_as(image.grid)


def test_linear_resampling_onto_another_grid_in_world_space():
    src_grid = Grid((20, 24, 22), (1.0, 1.5, 2.0), (-10.0, -15.0, -20.0), np.eye(3))
    src = linear_image(src_grid)
    c, s = np.cos(0.2), np.sin(0.2)
    dst = Grid(
        (6, 7, 8), (2.0, 1.7, 1.1), (-5.0, -3.0, -4.0), np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    )
    out = resample_to_grid(src, dst, "linear")
    np.testing.assert_allclose(out.numpy(), linear_image(dst).numpy(), atol=1e-6)


def test_label_modes_keep_labels(grid):
    labels = Image(np.random.default_rng(0).integers(0, 4, grid.shape).astype(np.uint8), grid)
    finer = grid.resized(tuple(2 * s for s in grid.shape))
    for mode in ("label", "label-gaussian"):
        out = resample_to_grid(labels, finer, mode)
        assert out.numpy().dtype == np.uint8
        assert set(np.unique(out.numpy())) <= {0, 1, 2, 3}
    with pytest.raises(ConfigError, match="Unknown interpolation"):
        resample_to_grid(labels, grid, "cubic")


def test_integer_image_linear_becomes_float(grid):
    out = resample_to_grid(Image(np.ones(grid.shape, np.int16), grid), grid, "linear")
    assert out.numpy().dtype == np.float32


def test_warp_evaluates_moving_at_x_plus_u_in_world_space(grid):
    lo, hi = grid.world_extent()
    spacing = np.array([1.2, 1.0, 0.8])
    size_ijk = np.ceil((hi - lo + 6.0) / spacing).astype(int)
    moving_grid = Grid(tuple(size_ijk[::-1]), tuple(spacing), tuple(lo - 3.0), np.eye(3))
    moving = linear_image(moving_grid)
    rng = np.random.default_rng(3)
    u = rng.uniform(-1, 1, size=(3, *grid.shape))
    field = DisplacementField(u, grid)
    warped = warp_image(moving, field)
    assert warped.grid.same_as(grid)
    world, idx = world_of(grid)
    moved = field.transform_points(world)
    expected = moved @ np.array([0.5, -1.0, 2.0]) + 3.0
    inside = moving_grid.contains_world(moved, margin_vox=-0.01)
    got = warped.numpy()[idx[:, 2], idx[:, 1], idx[:, 0]]
    assert inside.all()
    np.testing.assert_allclose(got[inside], expected[inside], atol=1e-6)


def test_warp_rejects_inverse_direction(grid, image):
    field = DisplacementField(np.zeros((3, *grid.shape)), grid, mapping="moving_to_fixed")
    with pytest.raises(GeometryError, match="fixed_to_moving"):
        warp_image(image, field)


@pytest.mark.parametrize("how", ["resample", "warp"])
def test_resampled_images_do_not_claim_the_source_files_checksum(image, how):
    src = Image(
        image.numpy(),
        image.grid,
        {"path": "/data/ct.nii.gz", "sha256": "ab" * 32, "MD5": "x", "format": "nii.gz"},
    )
    if how == "resample":
        out = resample_to_grid(src, image.grid, "linear")
    else:
        zero = DisplacementField(np.zeros((3, *image.grid.shape)), image.grid)
        out = warp_image(src, zero, "linear")
    np.testing.assert_allclose(out.numpy(), image.numpy(), atol=1e-5)
    assert "sha256" not in out.meta and "MD5" not in out.meta
    assert out.meta["path"] == "/data/ct.nii.gz" and out.meta["resampled_with"] == "linear"
    assert src.meta["sha256"] == "ab" * 32  # the source keeps its own
