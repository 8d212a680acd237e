import numpy as np
import pytest

from medfeat.errors import GeometryError
from medfeat.geometry import Grid, Image
from medfeat.metrics import EmptyLabelWarning, dice_per_label, hd95_mm, mean_dice


def sphere(grid: Grid, radius_mm: float, centre=None, label: int = 1) -> Image:
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in grid.shape], indexing="ij"), -1)
    world = grid.array_index_to_world(idx.reshape(-1, grid.ndim)).reshape(*grid.shape, grid.ndim)
    centre = np.mean(grid.world_extent(), axis=0) if centre is None else np.asarray(centre)
    inside = np.linalg.norm(world - centre, axis=-1) <= radius_mm
    return Image((inside * label).astype(np.uint8), grid)


def test_dice_hand_made():
    g = Grid.from_shape((1, 4, 4))
    a = Image(np.array([[[1, 1, 0, 0], [1, 1, 0, 0], [2, 2, 2, 2], [0, 0, 0, 0]]], np.uint8), g)
    b = Image(np.array([[[1, 0, 0, 0], [1, 0, 0, 0], [2, 2, 0, 0], [0, 0, 0, 0]]], np.uint8), g)
    scores = dice_per_label(a, b)
    assert scores == {1: pytest.approx(2 * 2 / 6), 2: pytest.approx(2 * 2 / 6)}
    with pytest.warns(EmptyLabelWarning):
        scores = dice_per_label(a, b, labels=[1, 2, 7])
    assert np.isnan(scores[7])
    assert mean_dice(scores) == pytest.approx(2 / 3)


def test_dice_requires_same_grid():
    a = Image(np.zeros((3, 3, 3), np.uint8), Grid.from_shape((3, 3, 3)))
    b = Image(np.zeros((3, 3, 3), np.uint8), Grid.from_shape((3, 3, 3), spacing=2.0))
    with pytest.raises(GeometryError, match="different grids") as err:
        dice_per_label(a, b)
    assert "interpolation='label'" in err.value.remedy


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.5, 0.75, 1.5)])
def test_hd95_two_concentric_spheres(spacing):
    c, s = np.cos(0.4), np.sin(0.4)
    size = tuple(int(60 / sp) for sp in reversed(spacing))
    g = Grid(size, spacing, (5.0, -3.0, 2.0), np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]))
    a, b = sphere(g, 15.0), sphere(g, 20.0)
    assert hd95_mm(a, b) == pytest.approx(5.0, abs=max(spacing))
    assert hd95_mm(a, a) == 0.0
    dice = dice_per_label(a, b)[1]
    assert dice == pytest.approx(2 * 15**3 / (15**3 + 20**3), abs=0.03)


def test_hd95_shifted_sphere():
    g = Grid.from_shape((50, 50, 50), spacing=(1.0, 1.0, 2.0))
    a = sphere(g, 12.0, centre=(25, 25, 50))
    b = sphere(g, 12.0, centre=(31, 25, 50))
    assert hd95_mm(a, b) == pytest.approx(6.0, abs=1.0)


def test_hd95_empty_label_is_nan_with_warning():
    g = Grid.from_shape((10, 10, 10))
    a = sphere(g, 3.0)
    with pytest.warns(EmptyLabelWarning, match="absent"):
        assert np.isnan(hd95_mm(a, Image(np.zeros(g.shape, np.uint8), g)))
