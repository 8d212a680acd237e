"""The plugin's example pipelines through the CLI, as the README gives them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medfeat.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def case_metrics(out: Path) -> dict:
    cases = json.loads((out / "metrics.json").read_text())["cases"]
    assert len(cases) == 1
    return next(iter(cases.values()))


def test_phantom_example_runs_end_to_end(tmp_path, capsys):
    """Tiny random ViT -> joint PCA -> ConvexAdam; checks the run, not accuracy (random features)."""
    out = tmp_path / "out"
    code = main(
        ["run", str(EXAMPLES / "phantom-tiny-vit.yaml"), "--out", str(out),
         "data.shape=[16,24,24]", "optimiser.adam_iterations=5"]
    )  # fmt: skip
    assert code == 0
    m = case_metrics(out)
    assert np.isfinite(m["sdlogj"]) and m["tre_mm_after"]["n"] == m["tre_mm_before"]["n"] > 0
    assert m["info_feature_channels"] == 8  # the joint PCA's dims
    assert (out / "breathing-phantom-seed0" / "field_fixed_to_moving.nii.gz").is_file()
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["timings_s"]["features"] > 0
    # random weights: the run records and says that its output is not a result
    for record in (provenance, json.loads((out / "metrics.json").read_text())):
        assert record["random_weights"] == ["dinov3-slices tiny ViT (seed 0)"]
        assert record["is_result"] is False
    assert "dinov3-slices tiny ViT (seed 0) runs with RANDOM weights" in " ".join(
        capsys.readouterr().err.split()
    )


def test_missing_weights_exit_code_2(tmp_path, capsys):
    code = main(
        ["run", str(EXAMPLES / "phantom-tiny-vit.yaml"), "--out", str(tmp_path / "o"),
         "backbone.random_weights=false"]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr()
    assert "checkpoint` is not set" in err.out + err.err
    assert "Traceback" not in err.out + err.err


# ------------------------------------------------------------------ real data (abdomen CT -> MR)
FAST = ["optimiser.adam_iterations=10"]


@pytest.mark.realdata
@pytest.mark.slow
def test_abdomen_example_with_mind(shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the YAML's data paths are relative to its own folder
    out = tmp_path / "mind"
    assert main(["run", str(EXAMPLES / "abdomen-ct-mr-mind.yaml"), "--out", str(out), *FAST]) == 0
    m = case_metrics(out)
    assert set(m["dice_after"]) <= {str(i) for i in range(1, 22)}
    assert len(m["dice_after"]) >= 15  # the shared organs present in both maps
    assert 0 <= m["sdlogj"] < 1
    assert set(m["hd95_mm_after"]) == set(m["dice_after"])
    assert 0 < m["hd95_mm_after"]["5"] < 100  # liver


@pytest.mark.realdata
@pytest.mark.slow
def test_abdomen_example_with_tiny_random_vit(shared_data, tmp_path, monkeypatch):
    """Runs the DINOv3 YAML with a tiny random ViT: proves the pipeline works, measures nothing."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "vit"
    args = ["backbone.checkpoint=null", "backbone.random_weights=true", "backbone.model=tiny",
            "backbone.patch_spacing_mm=6.0", *FAST]  # fmt: skip
    assert main(["run", str(EXAMPLES / "abdomen-ct-mr-dinov3.yaml"), "--out", str(out), *args]) == 0
    m = case_metrics(out)
    assert m["info_feature_channels"] == 24
    assert (out / "abdomen-ct-to-mr" / "warped_moving_labels.nii.gz").is_file()
