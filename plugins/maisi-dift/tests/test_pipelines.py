"""End-to-end from YAML: the example, the matcher with other backbones, ConvexAdam on MAISI features."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medfeat.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

PHANTOM = """
data:
  name: breathing-phantom
  shape: [24, 32, 32]
  spacing_mm: 4.0
  num_vessels: 12
"""


def run_yaml(tmp_path: Path, text: str) -> dict:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    out = tmp_path / "out"
    assert main(["-q", "run", str(path), "--out", str(out)]) == 0
    (case,) = [p for p in out.iterdir() if (p / "metrics.json").is_file()]
    return json.loads((case / "metrics.json").read_text())


def test_example_runs_through_the_cli(tmp_path):
    out = tmp_path / "o"
    args = ["-q", "run", str(EXAMPLES / "phantom-tiny-random.yaml"), "--out", str(out)]
    assert main([*args, "data.shape=[24,32,32]"]) == 0
    metrics = json.loads(next(out.glob("*/metrics.json")).read_text())
    assert metrics["num_queries"] > 0 and metrics["tre_mm_after"]["n"] == metrics["num_queries"]


def test_mind_features_with_the_meddift_matcher(tmp_path):
    """Weight-free features recover a known deformation through the MedDIFT matcher."""
    metrics = run_yaml(
        tmp_path,
        "kind: correspondence\nrequires: [medfeat-maisi-dift]\n"
        + PHANTOM
        + "backbone: {name: mind-ssc, radius_vox: 1, dilation_vox: 2}\n"
        "matcher: {name: meddift-matcher, box_half_size_mm: 12.0}\n",
    )
    assert metrics["tre_mm_after"]["mean"] < metrics["tre_mm_before"]["mean"]


def test_dinov3_features_with_the_meddift_matcher(tmp_path):
    pytest.importorskip("medfeat_dinov3", reason="the medfeat-dinov3 plugin is not installed")
    metrics = run_yaml(
        tmp_path,
        "kind: correspondence\nrequires: [medfeat-maisi-dift, medfeat-dinov3]\n"
        + PHANTOM
        + "backbone: {name: dinov3-slices, model: tiny, random_weights: true, "
        "slice_stride_vox: 2, patch_spacing_mm: 8.0}\n"
        "matcher: {name: meddift-matcher, box_half_size_mm: 12.0}\n",
    )
    assert metrics["num_queries"] == metrics["tre_mm_after"]["n"]


def test_convex_adam_on_maisi_features(tmp_path):
    out = tmp_path / "o"
    args = ["-q", "run", str(EXAMPLES / "phantom-tiny-random-convex-adam.yaml"), "--out", str(out)]
    assert main([*args, "data.shape=[24,32,32]"]) == 0
    metrics = json.loads(next(out.glob("*/metrics.json")).read_text())
    assert "tre_mm_after" in metrics


def test_missing_weights_is_a_config_error(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text(
        "kind: correspondence\n" + PHANTOM + "backbone: {name: maisi-dift}\n"
        "matcher: {name: meddift-matcher}\n"
    )
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr()
    assert "autoencoder_checkpoint" in err.out + err.err


def test_wrong_checkpoint_from_yaml_exits_2(tmp_path, capsys):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a checkpoint")
    path = tmp_path / "p.yaml"
    path.write_text(
        "kind: correspondence\n" + PHANTOM + f"backbone: {{name: maisi-dift, "
        f"autoencoder_checkpoint: {bad}, unet_checkpoint: {bad}}}\n"
        "matcher: {name: meddift-matcher}\n"
    )
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr()
    assert "could not be read" in err.out + err.err
