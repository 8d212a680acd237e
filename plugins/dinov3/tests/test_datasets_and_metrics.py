"""Label mapping, pre-alignment and the Dice/HD95 helper on synthetic label maps."""

from __future__ import annotations

import numpy as np
import pytest
from medfeat_dinov3.config import LabelMappedFilesConfig
from medfeat_dinov3.datasets import LabelMappedFiles, map_labels, translated
from medfeat_dinov3.evaluation import label_metrics

from medfeat.errors import ConfigError
from medfeat.geometry import Grid, Image


def test_map_labels_merges_and_drops():
    labels = Image(np.array([[[0, 1, 2, 30, 31, 99]]], np.uint8), Grid.from_shape((1, 1, 6)))
    out = map_labels(labels, {5: [1], 17: [30, 31], 3: [2]}).numpy()
    assert out.tolist() == [[[0, 5, 3, 17, 17, 0]]]


def test_label_maps_must_share_ids(tmp_path):
    config = LabelMappedFilesConfig(
        fixed="f", moving="m", fixed_labels="fl", moving_labels="ml",
        fixed_label_map={1: [1], 2: [2]}, moving_label_map={1: [1]},
    )  # fmt: skip
    with pytest.raises(ConfigError, match="only in fixed: \\[2\\]"):
        LabelMappedFiles(config)


def test_translation_moves_geometry_and_cache_key():
    image = Image(np.zeros((2, 3, 4)), Grid.from_shape((2, 3, 4), 2.0), {"sha256": "abc"})
    moved = translated(image, np.array([1.0, -2.0, 3.0]))
    assert moved.grid.origin == (1.0, -2.0, 3.0)
    assert moved.meta["sha256"] != "abc"


def test_dice_and_hd95_of_shifted_cubes():
    grid = Grid.from_shape((20, 20, 20), (2.0, 1.0, 1.0))  # x (ITK i) 2 mm
    a = np.zeros(grid.shape, np.uint8)
    b = np.zeros(grid.shape, np.uint8)
    a[5:15, 5:15, 5:15] = 3
    b[5:15, 5:15, 7:17] = 3  # two voxels along x = 4 mm
    m = label_metrics(Image(a, grid), Image(b, grid))
    assert m["3"]["dice"] == pytest.approx(0.8)
    assert m["3"]["hd95_mm"] == pytest.approx(4.0)
