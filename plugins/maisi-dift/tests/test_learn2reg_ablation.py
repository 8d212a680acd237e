"""Learn2Reg LungCT adapter on a generated layout, and the ablation command (CSV + PNG)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from medfeat_maisi_dift.learn2reg import LungCTConfig, LungCTDataset

from medfeat.cli.main import main
from medfeat.errors import InputFileError


def make_layout(root: Path, cases=("0001", "0002"), n_points=30) -> Path:
    rng = np.random.default_rng(0)
    for sub in ("imagesTr", "masksTr", "keypointsTr"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for case in cases:
        base = rng.uniform(-900, 200, (4, 5, 5))
        vol = np.kron(base, np.ones((6, 6, 6))).astype(np.float32)  # 24x30x30, HU-like
        kp = rng.uniform(3, 20, (n_points, 3))
        for phase, shift in ((0, 0.0), (1, 1.0)):
            img = sitk.GetImageFromArray(np.roll(vol, int(shift), axis=0))
            img.SetSpacing((1.5, 1.5, 2.5))
            img.SetOrigin((-20.0, 10.0, 5.0))
            sitk.WriteImage(img, str(root / "imagesTr" / f"LungCT_{case}_000{phase}.nii.gz"))
            pts = kp + np.array([0.0, 0.0, shift])  # ITK voxel x, y, z
            np.savetxt(root / "keypointsTr" / f"LungCT_{case}_000{phase}.csv", pts, delimiter=",")
        mask = sitk.GetImageFromArray(np.ones(vol.shape, np.uint8))
        mask.CopyInformation(img)
        sitk.WriteImage(mask, str(root / "masksTr" / f"LungCT_{case}_0000.nii.gz"))
    return root


def test_cases_keypoints_and_subsets(tmp_path):
    root = make_layout(tmp_path / "L2R")
    cases = list(LungCTDataset(LungCTConfig(root=root)).registration_cases())
    assert [c.id for c in cases] == ["LungCT_0001", "LungCT_0002"]
    c = cases[0]
    raw = np.loadtxt(root / "keypointsTr" / "LungCT_0001_0000.csv", delimiter=",")
    np.testing.assert_allclose(c.fixed_points.points, c.fixed.grid.index_to_world(raw))
    # expiration keypoints are 1 voxel further along k: 2.5 mm in world space
    np.testing.assert_allclose(c.moving_points.points - c.fixed_points.points, [[0, 0, 2.5]] * 30)
    assert c.fixed_mask is not None
    sub = list(LungCTDataset(LungCTConfig(root=root, max_keypoints=10)).registration_cases())
    assert len(sub[0].fixed_points) == 10
    d = sub[0].moving_points.points - sub[0].fixed_points.points
    np.testing.assert_allclose(d, [[0, 0, 2.5]] * 10)  # the same rows in both phases
    again = list(LungCTDataset(LungCTConfig(root=root, max_keypoints=10)).registration_cases())
    np.testing.assert_array_equal(again[0].fixed_points.points, sub[0].fixed_points.points)


def test_bad_layout_errors(tmp_path):
    with pytest.raises(InputFileError, match="imagesTr"):
        list(LungCTDataset(LungCTConfig(root=tmp_path)).registration_cases())
    root = make_layout(tmp_path / "L2R", cases=("0001",))
    with pytest.raises(InputFileError, match="LungCT_0009"):
        LungCTDataset(LungCTConfig(root=root, cases=["0009"])).case_ids()


def test_ablation_command_writes_table_and_heatmap(tmp_path):
    root = make_layout(tmp_path / "L2R", cases=("0001",), n_points=12)
    pipeline = tmp_path / "ablation.yaml"
    pipeline.write_text(
        f"""kind: correspondence
requires: [medfeat-maisi-dift]
data: {{name: learn2reg-lungct, root: {root}, max_keypoints: 5}}
backbone: {{name: maisi-dift, random_weights: true, architecture: tiny, size_multiple_vox: 32,
  autoencoder_num_splits: 1}}
matcher: {{name: meddift-matcher, box_half_size_mm: 6.0}}
"""
    )
    out = tmp_path / "abl"
    args = ["-q", "meddift-ablation", str(pipeline), "--timesteps", "10", "200"]
    assert main([*args, "--level-subsets", "0,1,2,3", "2,3", "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "ablation.csv").open()))
    assert len(rows) == 4
    assert {r["levels"] for r in rows} == {"0+1+2+3", "2+3"}
    for r in rows:
        assert r["weights"] == "random" and int(r["num_cases"]) == 1
        assert int(r["num_keypoints"]) == 5
        assert float(r["keypoint_mean_tre_mm"]) >= 0
    assert (out / "ablation.png").stat().st_size > 1000
    assert main(["meddift-ablation", str(pipeline), "--level-subsets", "7", "--out", str(out)]) == 2
