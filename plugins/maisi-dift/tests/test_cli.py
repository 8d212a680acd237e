"""``medfeat meddift-ablation``: the timestep x level-subset sweep from the command line."""

from __future__ import annotations

import csv

import numpy as np

from medfeat.cli.main import main


def test_ablation_command_writes_table_and_heatmap(tmp_path, make_layout):
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
    # every match lies in the 6 mm box around its query; the truth is 2.5 mm away along z
    bound = float(np.linalg.norm([6.0, 6.0, 6.0])) + 2.5
    for r in rows:
        assert r["weights"] == "random" and int(r["num_cases"]) == 1
        assert int(r["num_keypoints"]) == 5
        assert 0 < float(r["keypoint_mean_tre_mm"]) <= bound
        # one case: the mean over cases is that case's mean over its keypoints
        assert float(r["case_mean_tre_mm"]) == float(r["keypoint_mean_tre_mm"])
    assert (out / "ablation.png").stat().st_size > 1000
    assert main(["meddift-ablation", str(pipeline), "--level-subsets", "7", "--out", str(out)]) == 2


def test_ablation_refuses_a_pipeline_without_maisi_dift(tmp_path, make_layout, capsys):
    root = make_layout(tmp_path / "L2R", cases=("0001",), n_points=4)
    pipeline = tmp_path / "mind.yaml"
    pipeline.write_text(
        f"kind: correspondence\ndata: {{name: learn2reg-lungct, root: {root}}}\n"
        "backbone: {name: mind-ssc}\nmatcher: {name: meddift-matcher}\n"
    )
    assert main(["meddift-ablation", str(pipeline), "--out", str(tmp_path / "o")]) == 2
    assert "backbone is maisi-dift" in " ".join(capsys.readouterr().err.split())
