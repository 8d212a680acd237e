"""Re-storing an image in another orientation keeps its world geometry."""

from __future__ import annotations

import numpy as np
import pytest
from benchmarks.aniso_deformation import rotation_matrix
from benchmarks.aniso_orientation import ORIENTATIONS, handedness, restore, restore_as

from medfeat.geometry import Grid, Image

DIRECTION = rotation_matrix(np.array([0.0, 15.0, -30.0]))


@pytest.fixture
def image() -> Image:
    grid = Grid((6, 7, 9), (0.8, 1.1, 2.5), (12.0, -40.0, 7.5), DIRECTION)
    return Image(np.random.default_rng(0).normal(size=grid.shape).astype(np.float32), grid)


@pytest.mark.parametrize("orientation", list(ORIENTATIONS))
def test_every_voxel_keeps_its_world_position_and_value(image, orientation):
    stored = restore_as(image, orientation)
    idx = np.indices(stored.grid.shape).reshape(3, -1).T
    world = stored.grid.array_index_to_world(idx)
    old = image.grid.world_to_array_index(world)
    assert np.abs(old - np.rint(old)).max() < 1e-9  # lands exactly on an original voxel
    values = image.numpy()[tuple(np.rint(old).astype(int).T)]
    assert np.array_equal(values, stored.numpy().reshape(-1))
    assert sorted(stored.grid.spacing) == sorted(image.grid.spacing)


def test_the_storages_differ_and_only_left_handed_changes_handedness(image):
    stored = {name: restore_as(image, name) for name in ORIENTATIONS}
    for name, s in stored.items():
        expected = -1 if name == "left-handed" else 1
        assert handedness(s.grid) == expected * handedness(image.grid), name
        if name != "as-is":
            assert not np.allclose(s.grid.direction, image.grid.direction), name
    assert stored["permuted"].grid.shape != image.grid.shape


@pytest.mark.parametrize("orientation", list(ORIENTATIONS))
@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_written_files_show_the_same_intensity_at_the_same_world_point(
    image, orientation, suffix, tmp_path
):
    import SimpleITK as sitk

    from medfeat.io.images import read_image, write_image

    stored = restore_as(image, orientation)
    path = write_image(stored, tmp_path / f"moving{suffix}")
    assert read_image(path).grid.same_as(stored.grid)
    original = sitk.ReadImage(str(write_image(image, tmp_path / f"fixed{suffix}")))
    restored = sitk.ReadImage(str(path))
    rng = np.random.default_rng(1)
    lo, hi = image.grid.world_extent()
    inside = 0
    for point in lo + (hi - lo) * rng.random((200, 3)):
        if not image.grid.contains_world(point[None], margin_vox=-0.01)[0]:
            continue
        inside += 1
        a = original.EvaluateAtPhysicalPoint(tuple(point), sitk.sitkLinear)
        b = restored.EvaluateAtPhysicalPoint(tuple(point), sitk.sitkLinear)
        assert a == pytest.approx(b, abs=1e-4)
    assert inside > 20


def test_bad_axes_are_refused(image):
    with pytest.raises(ValueError):
        restore(image, (0, 0, 1))
    with pytest.raises(ValueError):
        restore(image, (0, 1, 2), (3,))
