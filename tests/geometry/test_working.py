"""The working grid, resampling through a pre-alignment, and the whole fields of a chain."""

import numpy as np
import pytest

from medfeat.errors import ConfigError, GeometryError
from medfeat.geometry import DisplacementField, Grid, Image
from medfeat.geometry.chain import whole_forward, whole_inverse
from medfeat.geometry.working import (
    CONTENT_KEY,
    check_affine,
    content_key,
    default_working_spacing,
    resample_image,
    working_grid,
)


def rotation_z(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def test_an_isotropic_fixed_grid_is_its_own_working_grid():
    grid = Grid((20, 16, 12), (2.0, 2.0, 2.0), (5.0, -3.0, 1.0), np.diag([1.0, 1.0, -1.0]))
    assert default_working_spacing(grid) == 2.0
    assert working_grid(grid) is grid


def test_an_anisotropic_grid_keeps_its_box_and_direction_at_isotropic_spacing():
    direction = rotation_z(20.0) @ np.diag([1.0, -1.0, 1.0])
    grid = Grid((10, 40, 40), (0.5, 0.5, 2.0), (3.0, 4.0, 5.0), direction)
    assert default_working_spacing(grid) == pytest.approx(0.794, abs=1e-3)
    work = working_grid(grid, 1.0)
    assert work.spacing == (1.0, 1.0, 1.0)
    assert work.shape == (20, 20, 20)
    assert np.allclose(work.direction, grid.direction)
    # the same box of voxel edges: corner = origin - half a voxel along each axis
    corner = np.asarray(grid.origin) - grid.direction @ (np.asarray(grid.spacing) / 2)
    work_corner = np.asarray(work.origin) - work.direction @ (np.asarray(work.spacing) / 2)
    assert np.allclose(corner, work_corner)


def test_a_working_spacing_that_leaves_no_voxels_is_refused():
    grid = Grid.from_shape((10, 10, 10), 2.0)
    with pytest.raises(ConfigError, match="working_spacing_mm"):
        working_grid(grid, 15.0)


def test_resampling_through_an_affine_reads_the_moving_image_at_A_x():
    grid = Grid.from_shape((12, 14, 16), 2.0, origin=(-10.0, -12.0, -8.0))
    world = grid.array_index_to_world(np.indices(grid.shape).reshape(3, -1).T)
    values = (world @ np.array([0.3, -0.2, 0.1]) + 7.0).reshape(grid.shape)  # linear in x
    moving = Image(values.astype(np.float32), grid)
    a = np.eye(4)
    a[:3, :3] = rotation_z(5.0)
    a[:3, 3] = (1.5, -2.0, 0.5)
    target = Grid.from_shape((6, 7, 8), 2.0, origin=(-4.0, -4.0, -2.0))  # well inside
    out = resample_image(moving, target, affine=a)
    pts = target.array_index_to_world(np.indices(target.shape).reshape(3, -1).T)
    moved = pts @ a[:3, :3].T + a[:3, 3]
    expected = moved @ np.array([0.3, -0.2, 0.1]) + 7.0
    assert np.allclose(out.numpy().ravel(), expected, atol=1e-3)


def test_resampling_keeps_the_image_when_nothing_changes():
    grid = Grid.from_shape((4, 5, 6), 2.0)
    image = Image(np.random.default_rng(0).random(grid.shape).astype(np.float32), grid)
    image.meta["sha256"] = "abc"
    assert resample_image(image, grid) is image
    assert content_key(image) == "abc"  # a file read from disk is keyed by its checksum


def test_a_resampled_image_claims_no_file_checksum_but_a_content_key():
    """``meta["sha256"]`` is a file's checksum (provenance reads it); a resampled copy is no file,
    so it drops it and carries a content key naming its source, grid, affine and interpolation."""
    grid = Grid.from_shape((4, 5, 6), 2.0)
    data = np.random.default_rng(0).random(grid.shape).astype(np.float32)
    image = Image(data, grid, {"sha256": "abc", "md5": "m", "path": "f.nii.gz"})
    other = Grid.from_shape((4, 5, 6), 2.0, origin=(1.0, 0.0, 0.0))
    out = resample_image(image, other)
    assert "sha256" not in out.meta and "md5" not in out.meta
    assert out.meta["path"] == "f.nii.gz" and image.meta["sha256"] == "abc"  # source untouched
    key = out.meta[CONTENT_KEY]
    assert key.startswith("abc+working") and content_key(out) == key
    # the same resampling gives the same key; another grid, affine or interpolation another one
    assert resample_image(image, other).meta[CONTENT_KEY] == key
    shifted = np.eye(4)
    shifted[:3, 3] = (0.5, 0.0, 0.0)
    keys = {
        key,
        resample_image(image, Grid.from_shape((4, 5, 6), 2.0, origin=(2.0, 0.0, 0.0))).meta[
            CONTENT_KEY
        ],
        resample_image(image, other, affine=shifted).meta[CONTENT_KEY],
        resample_image(image, other, nearest=True).meta[CONTENT_KEY],
    }
    assert len(keys) == 4
    # resampling a resampled image chains the keys, still without a checksum
    again = resample_image(out, grid)
    assert "sha256" not in again.meta and again.meta[CONTENT_KEY].startswith(key + "+working")
    # an image made in memory has no identity to cache under, nor does its copy
    plain = resample_image(Image(data, grid), other)
    assert CONTENT_KEY not in plain.meta and content_key(plain) is None


def test_outside_the_moving_image_is_its_background_not_zero():
    grid = Grid.from_shape((6, 6, 6), 1.0)
    ct = Image(np.full(grid.shape, -1000.0, np.float32), grid)
    ct.data[2:4, 2:4, 2:4] = 40.0
    far = Grid.from_shape((6, 6, 6), 1.0, origin=(50.0, 0.0, 0.0))
    assert np.all(resample_image(ct, far).numpy() == -1000.0)


def test_affines_must_be_invertible_and_orientation_preserving():
    with pytest.raises(GeometryError, match="prealignment 'x'"):
        check_affine(np.diag([1.0, 1.0, -1.0, 1.0]), "prealignment 'x'")
    with pytest.raises(GeometryError):
        check_affine(np.full((4, 4), np.nan), "p")
    assert np.array_equal(check_affine(np.eye(4), "p"), np.eye(4))


def test_whole_fields_compose_the_prealignment_with_the_deformable_part():
    fixed = Grid.from_shape((10, 12, 14), 2.0, origin=(-12.0, -10.0, -9.0))
    moving = Grid((12, 10, 14), (2.5, 2.0, 2.0), (30.0, 20.0, -5.0), np.diag([-1.0, 1.0, 1.0]))
    a = np.eye(4)
    a[:3, :3] = rotation_z(8.0)
    a[:3, 3] = (25.0, 15.0, 3.0)
    shift = np.array([1.0, -0.5, 2.0])
    u = DisplacementField(
        np.broadcast_to(shift[:, None, None, None], (3, *fixed.shape)).copy(), fixed
    )
    v = DisplacementField(-u.numpy(), fixed, "moving_to_fixed")
    fwd = whole_forward(u, a, fixed)
    x = fixed.array_index_to_world(np.array([[3.0, 4.0, 5.0], [7.0, 2.0, 9.0]]))
    expected = (x + shift) @ a[:3, :3].T + a[:3, 3]
    assert np.allclose(fwd.transform_points(x), expected)
    inv = whole_inverse(v, a, moving)
    assert inv.grid is moving and inv.mapping == "moving_to_fixed"
    y = moving.array_index_to_world(np.array([[5.0, 5.0, 7.0], [3.0, 6.0, 4.0]]))
    z = (y - a[:3, 3]) @ np.linalg.inv(a[:3, :3]).T
    assert np.allclose(inv.transform_points(y), z - shift)


def test_an_image_resampled_again_by_sitk_shares_no_identity_with_its_source():
    """The SimpleITK resampler drops the content key too: the copy is on another grid, so it must
    not pick up the source's cached features."""
    from medfeat.geometry.working import content_key, derived_meta, resample_image
    from medfeat.io.resample import resample_to_grid

    assert derived_meta({"sha256": "a", "content_key": "b", "path": "p"}) == {"path": "p"}
    source = Image(
        np.zeros((4, 4, 4), np.float32), Grid.from_shape((4, 4, 4), 2.0), {"sha256": "h"}
    )
    working = resample_image(source, Grid.from_shape((8, 8, 8), 1.0))
    assert content_key(working) is not None
    again = resample_to_grid(working, Grid.from_shape((16, 16, 16), 0.5))
    assert content_key(again) is None


def test_new_voxel_data_keeps_no_file_checksum():
    from medfeat.geometry.working import content_key

    image = Image(np.zeros((2, 2, 2)), Grid.from_shape((2, 2, 2)), {"sha256": "h", "path": "p"})
    rescaled = image.with_data(np.ones((2, 2, 2)), rescaled=True)
    assert rescaled.meta == {"path": "p", "rescaled": True}
    assert content_key(rescaled) is None and content_key(image) == "h"
    assert image.with_data(image.data, sha256="h").meta["sha256"] == "h"  # stated explicitly
