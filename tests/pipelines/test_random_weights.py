"""A run whose features come from random weights says so: on stderr, in metrics.json and provenance."""

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
optimiser: {{name: convex-adam, grid_spacing_vox: 3, search_radius_vox: 2, adam_iterations: 2}}
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
