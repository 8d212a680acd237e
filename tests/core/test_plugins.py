"""Plugin discovery: third-party distributions, broken plugins, MEDFEAT_PLUGINS, duplicates."""

import subprocess
import sys
from pathlib import Path

import pytest

from medfeat.plugins import build_registry

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "examples" / "plugin-template" / "src" / "medfeat_example_plugin"


def install_template(fake_distribution):
    modules = {f"medfeat_example_plugin/{p.name}": p.read_text() for p in TEMPLATE.glob("*.py")}
    return fake_distribution(
        "medfeat-example-plugin", modules, {"example": "medfeat_example_plugin"}
    )


def test_third_party_plugin_is_discovered(fake_distribution):
    install_template(fake_distribution)
    reg = build_registry()
    comp = reg.get("optimiser", "centre-of-mass")
    assert comp.plugin == "medfeat-example-plugin"
    assert reg.plugins["medfeat-example-plugin"] == "0.1.0"
    assert not reg.problems


def test_third_party_component_runs_from_yaml(fake_distribution, tmp_path):
    import json

    import numpy as np

    from medfeat.cli.main import main

    install_template(fake_distribution)
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "kind: registration\n"
        "data: {name: breathing-phantom, shape: [24, 24, 24], spacing_mm: 4.0, amplitude_mm: 0.0}\n"
        "optimiser: {name: centre-of-mass}\n"
    )
    out = tmp_path / "out"
    assert main(["-q", "run", str(pipeline), "--out", str(out), "data.seed=3"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    case = metrics["cases"]["breathing-phantom-seed3"]
    # no motion: the translation found is tiny and landmarks stay put
    assert case["tre_mm_after"]["mean"] < 0.5
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["versions"]["plugin:medfeat-example-plugin"] == "0.1.0"
    assert prov["config"]["optimiser"] == {"name": "centre-of-mass", "threshold": 0.0}
    assert (out / "breathing-phantom-seed3" / "field_fixed_to_moving.nii.gz").is_file()
    assert np.isfinite(case["sdlogj"])


def test_broken_plugin_is_skipped_and_reported(fake_distribution, capsys):
    fake_distribution(
        "medfeat-broken",
        {"medfeat_broken.py": "import not_a_module_anywhere\n"},
        {"broken": "medfeat_broken"},
    )
    fake_distribution(
        "medfeat-badhook",
        {
            "medfeat_badhook.py": "from medfeat import hookimpl\n@hookimpl\ndef medfeat_register_backbones(register):\n    raise RuntimeError('boom')\n"
        },
        {"badhook": "medfeat_badhook"},
    )
    reg = build_registry()
    problems = {p.plugin: p.message for p in reg.problems}
    assert "ModuleNotFoundError" in problems["medfeat-broken"]
    assert "boom" in problems["medfeat-badhook"]
    assert "intensity" in reg.names("backbone")  # built-ins still load

    from medfeat.cli.main import main

    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "medfeat-broken" in out and "not_a_module_anywhere" in out
    # unknown-component errors mention failed plugins too
    with pytest.raises(
        Exception, match="Plugins that failed to load: medfeat-badhook, medfeat-broken"
    ):
        reg.get("backbone", "nope")


def test_medfeat_plugins_env_limits_external_plugins(fake_distribution, monkeypatch):
    install_template(fake_distribution)
    monkeypatch.setenv("MEDFEAT_PLUGINS", "")
    reg = build_registry()
    assert "centre-of-mass" not in reg.names("optimiser")
    assert "intensity" in reg.names("backbone")  # the core is not an external plugin
    monkeypatch.setenv("MEDFEAT_PLUGINS", "medfeat-example-plugin")
    assert "centre-of-mass" in build_registry().names("optimiser")


def test_duplicate_names_are_refused_with_a_reason(fake_distribution):
    fake_distribution(
        "medfeat-dup",
        {
            "medfeat_dup.py": "from medfeat import hookimpl\n@hookimpl\ndef medfeat_register_backbones(register):\n    register('intensity', lambda c, x: None)\n    register('Bad Name', lambda c, x: None)\n"
        },
        {"dup": "medfeat_dup"},
    )
    reg = build_registry()
    assert reg.get("backbone", "intensity").plugin == "medfeat"
    messages = " ".join(p.message for p in reg.problems if p.plugin == "medfeat-dup")
    assert "already registered by medfeat" in messages and "kebab-case" in messages


def test_discovery_imports_no_torch():
    code = "import sys; from medfeat.plugins import build_registry; build_registry(); print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "False"
