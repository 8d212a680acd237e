"""End-to-end: the example YAMLs through the CLI, the feature cache, the matcher, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medfeat.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
REPO = Path(__file__).resolve().parents[3]


def case_metrics(out: Path) -> dict:
    cases = json.loads((out / "metrics.json").read_text())["cases"]
    assert len(cases) == 1
    return next(iter(cases.values()))


def test_phantom_example_runs_end_to_end(tmp_path):
    """Tiny random ViT -> joint PCA -> ConvexAdam; checks the run, not accuracy (random features)."""
    out = tmp_path / "out"
    code = main(
        ["run", str(EXAMPLES / "phantom-tiny-vit.yaml"), "--out", str(out),
         "data.shape=[16,24,24]", "optimiser.adam_iterations=5"]
    )  # fmt: skip
    assert code == 0
    m = case_metrics(out)
    assert np.isfinite(m["sdlogj"]) and "tre_mm_after" in m
    assert m["info_feature_channels"] == 8  # the joint PCA's dims
    assert (out / "breathing-phantom-seed0" / "field_fixed_to_moving.nii.gz").is_file()
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["timings_s"]["features"] > 0


def test_missing_weights_exit_code_2(tmp_path, capsys):
    code = main(
        ["run", str(EXAMPLES / "phantom-tiny-vit.yaml"), "--out", str(tmp_path / "o"),
         "backbone.random_weights=false"]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr()
    assert "checkpoint` is not set" in err.out + err.err
    assert "Traceback" not in err.out + err.err


def test_features_of_a_volume_are_computed_once_per_run(tmp_path, monkeypatch):
    """Two pairs sharing the fixed image: the backbone runs three times, not four."""
    from medfeat_dinov3.backbone import SliceBackbone

    from medfeat.io.images import write_image
    from medfeat.phantoms import breathing_phantom

    pair = breathing_phantom((12, 20, 20), 4.0, 4.0)
    paths = {}
    for name, image in (("fixed", pair.fixed), ("moving", pair.moving)):
        paths[name] = tmp_path / f"{name}.nii.gz"
        write_image(image, paths[name])
    moving2 = tmp_path / "moving2.nii.gz"
    write_image(pair.moving.with_data(pair.moving.numpy() * 0.9), moving2)
    (tmp_path / "pairs.csv").write_text(
        f"case_id,fixed,moving\na,fixed.nii.gz,moving.nii.gz\nb,fixed.nii.gz,{moving2.name}\n"
    )
    calls = []
    original = SliceBackbone.extract
    monkeypatch.setattr(
        SliceBackbone,
        "extract",
        lambda self, image: calls.append(image.name) or original(self, image),
    )
    out = tmp_path / "out"
    code = main(
        ["run", str(EXAMPLES / "phantom-tiny-vit.yaml"), "--out", str(out),
         "data={name: csv-pairs, csv: " + str(tmp_path / "pairs.csv") + "}",
         "optimiser.adam_iterations=2"]
    )  # fmt: skip
    assert code == 0
    assert len(calls) == 3
    assert sum("fixed.nii.gz" in c for c in calls) == 1


def test_dinov3_features_feed_the_cosine_matcher(tmp_path):
    """Mixing: DINOv3 slice features in a correspondence pipeline with the feature matcher."""
    pipeline = tmp_path / "match.yaml"
    pipeline.write_text(
        "kind: correspondence\nrequires: [medfeat-dinov3]\n"
        "data: {name: breathing-phantom, shape: [16, 24, 24], spacing_mm: 4.0}\n"
        "backbone: {name: dinov3-slices, model: tiny, random_weights: true, patch_spacing_mm: 8.0}\n"
        "matcher: {name: feature-matcher, box_half_size_mm: 12.0}\n"
    )
    out = tmp_path / "out"
    assert main(["run", str(pipeline), "--out", str(out)]) == 0
    m = case_metrics(out)
    assert np.isfinite(m["tre_mm_after"]["mean"])


# ------------------------------------------------------------------ real data (abdomen CT -> MR)
FAST = ["optimiser.adam_iterations=10"]


@pytest.mark.realdata
@pytest.mark.slow
def test_abdomen_example_with_mind(shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the YAML's data paths are relative to the repository root
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
    monkeypatch.chdir(REPO)
    out = tmp_path / "vit"
    args = ["backbone.checkpoint=null", "backbone.random_weights=true", "backbone.model=tiny",
            "backbone.patch_spacing_mm=6.0", *FAST]  # fmt: skip
    assert main(["run", str(EXAMPLES / "abdomen-ct-mr-dinov3.yaml"), "--out", str(out), *args]) == 0
    m = case_metrics(out)
    assert m["info_feature_channels"] == 24
    assert (out / "abdomen-ct-to-mr" / "warped_moving_labels.nii.gz").is_file()
