"""The ablation table: per-cell case-mean and keypoint-mean TRE, and every level subset."""

from __future__ import annotations

import csv

import numpy as np
from medfeat_maisi_dift.ablation import ALL_SUBSETS, Cell, subset_label, write_table


def test_all_fifteen_level_subsets():
    assert len(ALL_SUBSETS) == 15 == len(set(ALL_SUBSETS))
    assert ALL_SUBSETS[0] == (0,) and ALL_SUBSETS[-1] == (0, 1, 2, 3)
    assert subset_label((1, 3)) == "1+3"


def test_case_mean_weights_cases_and_keypoint_mean_weights_points(tmp_path):
    cell = Cell({"a": np.array([1.0, 1.0, 1.0]), "b": np.array([4.0])})
    assert cell.case_mean_mm == 2.5  # (1 + 4) / 2
    assert cell.keypoint_mean_mm == 1.75  # (1 + 1 + 1 + 4) / 4
    write_table({(20, (2, 3)): cell}, tmp_path / "t.csv", random_weights=False)
    (row,) = csv.DictReader((tmp_path / "t.csv").open())
    assert row == {
        "timestep": "20",
        "levels": "2+3",
        "case_mean_tre_mm": "2.5000",
        "keypoint_mean_tre_mm": "1.7500",
        "num_cases": "2",
        "num_keypoints": "4",
        "weights": "checkpoint",
    }
