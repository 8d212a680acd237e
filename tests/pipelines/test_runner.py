"""The pipeline runner: what a run records (random weights: stderr, metrics.json, provenance) and
which torchrun rank writes it."""

from __future__ import annotations

import json
import types

import pytest

from medfeat.api import ConfigModel, hookimpl
from medfeat.cli.main import main
from medfeat.plugins import build_registry, set_registry


class RandomIntensityConfig(ConfigModel):
    pass


def _make_random_backbone(config, context):
    from medfeat.builtins.backbones import IntensityConfig, make_intensity

    context.note_random_weights("random-intensity toy network (seed 0)")
    return make_intensity(IntensityConfig(), context)


@hookimpl
def medfeat_register_backbones(register):
    register("random-intensity", _make_random_backbone, config=RandomIntensityConfig)


@pytest.fixture
def registry_with_random_backbone():
    plugin = types.SimpleNamespace(medfeat_register_backbones=medfeat_register_backbones)
    set_registry(build_registry(extra_plugins=[("test-random", plugin)]))
    yield
    set_registry(None)


PIPELINE = """kind: registration
data: {{name: breathing-phantom, shape: [24, 24, 24], spacing_mm: 4.0}}
backbone: {{name: {backbone}}}
optimiser: {{name: convex-adam, grid_spacing_mm: 12, search_radius_mm: 24, adam_iterations: 2}}
"""


@pytest.mark.parametrize("backbone", ["random-intensity", "intensity"])
def test_random_weights_are_recorded_and_announced(
    registry_with_random_backbone, tmp_path, capsys, backbone
):
    yaml = tmp_path / "p.yaml"
    yaml.write_text(PIPELINE.format(backbone=backbone))
    assert main(["run", str(yaml), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    provenance = json.loads((tmp_path / "out" / "provenance.json").read_text())
    if backbone == "random-intensity":
        expected = ["random-intensity toy network (seed 0)"]
        assert metrics["random_weights"] == provenance["random_weights"] == expected
        assert metrics["is_result"] is False and provenance["is_result"] is False
        assert "NOT a result" in " ".join(err.split())
        assert "random-intensity toy network" in err
    else:
        assert "random_weights" not in metrics and "random_weights" not in provenance
        assert "RANDOM" not in err


def test_under_torchrun_only_rank_0_writes_the_summary(blobs_plugin, tmp_path, monkeypatch):
    p = tmp_path / "pre.yaml"
    p.write_text("kind: pretraining\ndata: {name: blobs, n: 2}\npretrainer: {name: stats}\n")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["run", str(p), "--out", str(tmp_path / "r1")]) == 0
    assert not (tmp_path / "r1" / "provenance.json").exists()
    assert not (tmp_path / "r1" / "metrics.json").exists()
    infer = tmp_path / "infer.yaml"
    head = tmp_path / "head.json"
    head.write_text(json.dumps({"t": 0.5}))
    infer.write_text(
        "kind: segmentation\nmode: infer\ndata: {name: blobs}\nhead: {name: threshold}\n"
        f"checkpoint: {head}\n"
    )
    assert main(["run", str(infer), "--out", str(tmp_path / "i1")]) == 0
    assert not (tmp_path / "i1").exists()  # inference is rank 0's whole job: nothing written here
    monkeypatch.setenv("RANK", "0")
    assert main(["run", str(p), "--out", str(tmp_path / "r0")]) == 0
    assert json.loads((tmp_path / "r0" / "provenance.json").read_text())["world_size"] == 2
    assert main(["run", str(infer), "--out", str(tmp_path / "i0")]) == 0
    assert (tmp_path / "i0" / "s3" / "labels.nii.gz").is_file()
