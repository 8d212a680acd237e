"""The plugin's example pipelines, run (or validated) as the README gives them."""

from __future__ import annotations

import json
from pathlib import Path

from medfeat.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_example_runs_and_says_its_weights_are_random(tmp_path, capsys):
    out = tmp_path / "o"
    args = ["run", str(EXAMPLES / "phantom-tiny-random.yaml"), "--out", str(out)]
    assert main([*args, "data.shape=[24,32,32]"]) == 0
    metrics = json.loads(next(out.glob("*/metrics.json")).read_text())
    assert metrics["num_queries"] > 0 and metrics["tre_mm_after"]["n"] == metrics["num_queries"]
    # every match lies in the 16 mm box around its query: a bounded error, finite everywhere
    assert metrics["tre_mm_after"]["max"] <= metrics["tre_mm_before"]["max"] + 16 * 3**0.5
    noted = ["maisi-dift tiny networks (seed 0)"]
    for summary in ("metrics.json", "provenance.json"):
        record = json.loads((out / summary).read_text())
        assert record["random_weights"] == noted and record["is_result"] is False
    err = " ".join(capsys.readouterr().err.split())
    assert "maisi-dift tiny networks (seed 0) runs with RANDOM weights" in err


def test_convex_adam_on_maisi_features(tmp_path):
    out = tmp_path / "o"
    args = ["-q", "run", str(EXAMPLES / "phantom-tiny-random-convex-adam.yaml"), "--out", str(out)]
    assert main([*args, "data.shape=[24,32,32]"]) == 0
    metrics = json.loads(next(out.glob("*/metrics.json")).read_text())
    assert metrics["info_feature_channels"] == 8  # fused levels reduced by joint PCA to 8
    assert metrics["tre_mm_after"]["n"] == metrics["tre_mm_before"]["n"] > 0
    assert json.loads((out / "metrics.json").read_text())["random_weights"] == [
        "maisi-dift tiny networks (seed 0)"
    ]


def test_lung4dct_example_needs_only_its_weights(tmp_path, capsys):
    """As committed, the example names placeholder weights: validate says exactly that."""
    example = EXAMPLES / "lung4dct-meddift-box.yaml"
    # without the internal data (a user's clone) the data root is checked first: point it at a folder
    data = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "lung4dct"
    data_root = [] if data.is_dir() else [f"data.root={tmp_path}"]
    assert main(["validate", str(example), *data_root]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "/path/to/maisi/autoencoder_epoch273.pt" in err
    weights = {}
    for name in ("autoencoder_epoch273.pt", "diff_unet_3d_ddpm.pt"):
        weights[name] = tmp_path / name
        weights[name].write_bytes(b"x")
    overrides = [
        f"backbone.autoencoder_checkpoint={weights['autoencoder_epoch273.pt']}",
        f"backbone.unet_checkpoint={weights['diff_unet_3d_ddpm.pt']}",
    ]
    assert main(["validate", str(example), *overrides, *data_root]) == 0
