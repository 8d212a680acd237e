import numpy as np
import pytest
import torch

from medfeat.components import FeatureLevel
from medfeat.errors import ConfigError
from medfeat.features import resample_level
from medfeat.geometry import Grid, Image
from medfeat.io.resample import resample_to_grid


def rotation_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotation_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


SOURCE = Grid((10, 12, 14), (1.5, 1.0, 2.0), (2.0, -3.0, 5.0), rotation_z(0.4))
TARGET = Grid((8, 9, 7), (1.2, 1.7, 1.4), (4.0, 1.0, 8.0), rotation_z(-0.3) @ rotation_x(0.5))


def world_mask(source: Grid, target: Grid) -> np.ndarray:
    """Target voxels that fall between source voxel centres."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in target.shape], indexing="ij"), -1)
    pos = target.transform(idx.reshape(-1, 3), "array", "array", to=source)
    ok = np.all((pos >= 0) & (pos <= np.asarray(source.shape) - 1), axis=1).reshape(target.shape)
    assert ok.sum() > 50
    return ok


def test_resample_level_matches_simpleitk_through_world_space():
    data = np.random.default_rng(1).normal(size=(2, *SOURCE.shape)).astype(np.float32)
    out = resample_level(FeatureLevel(torch.from_numpy(data), SOURCE, "f"), TARGET)
    assert out.grid is TARGET and out.name == "f" and out.data.dtype == torch.float32
    mask = world_mask(SOURCE, TARGET)
    for c in range(2):
        itk = resample_to_grid(Image(data[c].astype(np.float64), SOURCE), TARGET).numpy()
        assert np.allclose(out.data[c].numpy()[mask], itk[mask], atol=1e-5)
    # outside the source the level is zero
    far = Grid(TARGET.shape, TARGET.spacing, (900.0, 0.0, 0.0), TARGET.direction)
    assert resample_level(FeatureLevel(torch.from_numpy(data), SOURCE), far).data.abs().max() == 0


def test_resample_level_nearest_keeps_labels_and_dtype():
    labels = torch.arange(SOURCE.num_voxels, dtype=torch.int64).reshape(1, *SOURCE.shape)
    out = resample_level(FeatureLevel(labels, SOURCE), TARGET, "nearest")
    assert out.data.dtype == torch.int64
    itk = resample_to_grid(Image(labels[0].numpy().astype(np.int32), SOURCE), TARGET, "nearest")
    mask = world_mask(SOURCE, TARGET)
    assert np.array_equal(out.data[0].numpy()[mask], itk.numpy()[mask])


def test_resample_level_onto_its_own_grid_is_the_same_level():
    level = FeatureLevel(torch.rand(3, *SOURCE.shape), SOURCE)
    assert resample_level(level, SOURCE) is level
    # an equal grid built anew samples every voxel at its own centre
    shifted = Grid(
        SOURCE.shape, SOURCE.spacing, tuple(np.add(SOURCE.origin, 0.01)), SOURCE.direction
    )
    out = resample_level(level, shifted)
    assert torch.allclose(out.data[:, 1:-1, 1:-1, 1:-1], level.data[:, 1:-1, 1:-1, 1:-1], atol=0.02)


def test_resample_level_refuses_an_unknown_mode():
    level = FeatureLevel(torch.rand(1, *SOURCE.shape), SOURCE)
    with pytest.raises(ConfigError, match="linear, nearest"):
        resample_level(level, TARGET, mode="cubic")
