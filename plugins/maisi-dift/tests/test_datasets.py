"""The learn2reg-lungct dataset on a generated Learn2Reg layout."""

from __future__ import annotations

import numpy as np
import pytest
from medfeat_maisi_dift.config import LungCTConfig
from medfeat_maisi_dift.datasets import LungCTDataset

from medfeat.errors import InputFileError


def test_cases_keypoints_and_subsets(tmp_path, make_layout):
    root = make_layout(tmp_path / "L2R")
    cases = list(LungCTDataset(LungCTConfig(root=root)).registration_cases())
    assert [c.id for c in cases] == ["LungCT_0001", "LungCT_0002"]
    c = cases[0]
    raw = np.loadtxt(root / "keypointsTr" / "LungCT_0001_0000.csv", delimiter=",")
    np.testing.assert_allclose(c.fixed_points.points, c.fixed.grid.index_to_world(raw))
    # expiration keypoints are 1 voxel further along k: 2.5 mm in world space
    np.testing.assert_allclose(c.moving_points.points - c.fixed_points.points, [[0, 0, 2.5]] * 30)
    assert c.fixed_mask.grid.same_as(c.fixed.grid) and c.fixed_mask.numpy().all()
    unmasked = LungCTDataset(LungCTConfig(root=root, cases=["0001"], use_masks=False))
    assert next(unmasked.registration_cases()).fixed_mask is None
    sub = list(LungCTDataset(LungCTConfig(root=root, max_keypoints=10)).registration_cases())
    assert len(sub[0].fixed_points) == 10
    d = sub[0].moving_points.points - sub[0].fixed_points.points
    np.testing.assert_allclose(d, [[0, 0, 2.5]] * 10)  # the same rows in both phases
    again = list(LungCTDataset(LungCTConfig(root=root, max_keypoints=10)).registration_cases())
    np.testing.assert_array_equal(again[0].fixed_points.points, sub[0].fixed_points.points)


def test_bad_layout_errors(tmp_path, make_layout):
    with pytest.raises(InputFileError, match="imagesTr"):
        list(LungCTDataset(LungCTConfig(root=tmp_path)).registration_cases())
    root = make_layout(tmp_path / "L2R", cases=("0001",))
    with pytest.raises(InputFileError, match="LungCT_0009"):
        LungCTDataset(LungCTConfig(root=root, cases=["0009"])).case_ids()
