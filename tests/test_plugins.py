"""Plugin discovery: a third-party distribution (examples/plugin-template) found and run, broken
plugins skipped and reported, MEDFEAT_PLUGINS, no torch at discovery."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medfeat.cli.main import main
from medfeat.geometry import Grid, Image
from medfeat.io import read_displacement_field
from medfeat.io.images import write_image
from medfeat.phantoms import breathing_phantom
from medfeat.plugins import build_registry

REPO = Path(__file__).resolve().parents[1]
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


def write_shifted_phantom(folder: Path, shift_vox: tuple[int, int, int]) -> np.ndarray:
    """The phantom and a copy translated by whole voxels, both inside a zero margin on one grid,
    with landmark files (LPS mm). Returns the translation in world mm (fixed -> moving)."""
    pair = breathing_phantom((24, 24, 24), 4.0, amplitude_mm=0.0, num_vessels=20, seed=3)
    margin = 4  # > every |shift_vox|: nothing leaves the volume
    grid = pair.fixed.grid
    canvas = Grid(
        tuple(n + 2 * margin for n in grid.shape),
        grid.spacing,
        grid.array_index_to_world(np.full((1, 3), -margin, float))[0],
        grid.direction,
    )
    fixed, moving = np.zeros(canvas.shape, np.float32), np.zeros(canvas.shape, np.float32)
    at = [margin + s for s in shift_vox]
    fixed[margin:-margin, margin:-margin, margin:-margin] = pair.fixed.numpy()
    moving[at[0] : at[0] + 24, at[1] : at[1] + 24, at[2] : at[2] + 24] = pair.fixed.numpy()
    write_image(Image(fixed, canvas), folder / "fixed.nii.gz")
    write_image(Image(moving, canvas), folder / "moving.nii.gz")
    origin = canvas.array_index_to_world(np.zeros((1, 3)))[0]
    shift_mm = canvas.array_index_to_world(np.array([shift_vox], float))[0] - origin
    points = pair.fixed_points.points  # world mm: the same on the phantom's grid and the canvas
    np.savetxt(folder / "fixed.csv", points, delimiter=",")
    np.savetxt(folder / "moving.csv", points + shift_mm, delimiter=",")
    return shift_mm


def test_the_template_optimiser_recovers_a_known_translation_from_yaml(fake_distribution, tmp_path):
    install_template(fake_distribution)
    shift_mm = write_shifted_phantom(tmp_path, (2, -3, 1))
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "kind: registration\n"
        "data:\n"
        "  name: files\n"
        "  fixed: fixed.nii.gz\n"
        "  moving: moving.nii.gz\n"
        "  fixed_landmarks: {path: fixed.csv, space: lps}\n"
        "  moving_landmarks: {path: moving.csv, space: lps}\n"
        "  case_id: shifted\n"
        "backbone: {name: intensity, normalise: none}\n"
        "optimiser: {name: centre-of-mass, threshold: 0.2}\n"
    )
    out = tmp_path / "out"
    assert main(["-q", "run", str(pipeline), "--out", str(out)]) == 0
    case = json.loads((out / "metrics.json").read_text())["cases"]["shifted"]
    # before: every landmark is off by the translation (15 mm); after: the translation is undone
    assert case["tre_mm_before"]["mean"] == pytest.approx(np.linalg.norm(shift_mm), abs=1e-3)
    assert case["tre_mm_after"]["mean"] < 0.1
    field = read_displacement_field(out / "shifted" / "field_fixed_to_moving.nii.gz")
    assert np.allclose(field.numpy().reshape(3, -1).mean(1), shift_mm, atol=0.2)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["versions"]["plugin:medfeat-example-plugin"] == "0.1.0"
    assert prov["config"]["optimiser"] == {"name": "centre-of-mass", "threshold": 0.2}


def test_broken_plugin_is_skipped_and_reported(fake_distribution, capsys):
    fake_distribution(
        "medfeat-broken",
        {"medfeat_broken.py": "import not_a_module_anywhere\n"},
        {"broken": "medfeat_broken"},
    )
    fake_distribution(
        "medfeat-badhook",
        {
            "medfeat_badhook.py": "from medfeat.api import hookimpl\n@hookimpl\ndef medfeat_register_backbones(register):\n    raise RuntimeError('boom')\n"
        },
        {"badhook": "medfeat_badhook"},
    )
    reg = build_registry()
    problems = {p.plugin: p.message for p in reg.problems}
    assert "ModuleNotFoundError" in problems["medfeat-broken"]
    assert "boom" in problems["medfeat-badhook"]
    assert "intensity" in reg.names("backbone")  # built-ins still load

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


def test_discovery_imports_no_torch():
    code = "import sys; from medfeat.plugins import build_registry; build_registry(); print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "False"
