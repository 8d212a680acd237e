"""Plugin discovery: a third-party distribution (examples/plugin-template) found and run, broken
plugins skipped and reported, MEDFEAT_PLUGINS, no torch at discovery; no plugin takes the CLI
down (imports that exit, commands that fail or take a built-in name, misspelt hooks, crashes at
run time blamed on the plugin)."""

import json
import os
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


# ------------------------------------------------------------ no plugin can take the CLI down
def hook_module(body: str) -> str:
    return "from medfeat.api import hookimpl\n" + body


BAD_AT_IMPORT = {
    "medfeat-exits": "import sys\nsys.exit(3)\n",
    "medfeat-exits-none": "raise SystemExit\n",
    "medfeat-ctrl-c": "raise KeyboardInterrupt\n",
}


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler, as at the start of a real ``medfeat`` process (a library an
    earlier test loaded may have left its own handler, under which discovery lets every
    KeyboardInterrupt through)."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_plugin_that_exits_or_interrupts_at_import_is_only_reported(
    fake_distribution, capsys, default_sigint
):
    for dist, source in BAD_AT_IMPORT.items():
        module = dist.replace("-", "_")
        fake_distribution(dist, {f"{module}.py": source}, {"x": module})
    reg = build_registry()
    problems = {p.plugin: p.message for p in reg.problems}
    assert "it called sys.exit(3)" in problems["medfeat-exits"]
    assert "it called sys.exit(None)" in problems["medfeat-exits-none"]
    assert "it raised KeyboardInterrupt" in problems["medfeat-ctrl-c"]
    assert "convex-adam" in reg.names("optimiser")  # built-ins load regardless

    assert main(["plugins"]) == 0  # the CLI itself keeps working
    out = capsys.readouterr().out
    assert all(dist in out for dist in BAD_AT_IMPORT)


def test_a_real_ctrl_c_during_discovery_still_stops_medfeat(fake_distribution, default_sigint):
    fake_distribution(
        "medfeat-slow",
        {"medfeat_slow.py": "import os, signal\nos.kill(os.getpid(), signal.SIGINT)\n"},
        {"slow": "medfeat_slow"},
    )
    with pytest.raises(KeyboardInterrupt):
        build_registry()


def test_a_registration_hook_that_exits_is_only_reported(fake_distribution):
    fake_distribution(
        "medfeat-hookexit",
        {
            "medfeat_hookexit.py": hook_module(
                "@hookimpl\ndef medfeat_register_backbones(register):\n    raise SystemExit(1)\n"
            )
        },
        {"x": "medfeat_hookexit"},
    )
    reg = build_registry()
    assert "medfeat_register_backbones raised it called sys.exit(1)" in reg.problems[0].message
    assert "intensity" in reg.names("backbone")


COMMAND_PLUGINS = {
    "medfeat-cmd-raises": hook_module(
        "@hookimpl\ndef medfeat_register_commands(cli):\n"
        "    cli.add_parser('half-added')\n"
        "    raise RuntimeError('commands broke')\n"
    ),
    "medfeat-cmd-run": hook_module(
        "@hookimpl\ndef medfeat_register_commands(cli):\n"
        "    p = cli.add_parser('run', help='hijacked')\n"
        "    p.set_defaults(func=lambda args: 99)\n"
    ),
    "medfeat-cmd-alias": hook_module(
        "@hookimpl\ndef medfeat_register_commands(cli):\n"
        "    cli.add_parser('own', aliases=['validate'])\n"
    ),
    "medfeat-cmd-exits": hook_module(
        "import sys\n@hookimpl\ndef medfeat_register_commands(cli):\n    sys.exit(4)\n"
    ),
    "medfeat-cmd-good": hook_module(
        "@hookimpl\ndef medfeat_register_commands(cli):\n"
        "    p = cli.add_parser('hello', help='says hello')\n"
        "    p.set_defaults(func=lambda args: 7)\n"
    ),
}


def test_each_plugins_commands_are_isolated(fake_distribution, capsys):
    for dist, source in COMMAND_PLUGINS.items():
        module = dist.replace("-", "_")
        fake_distribution(dist, {f"{module}.py": source}, {"x": module})
    from medfeat.cli import main as cli
    from medfeat.cli.run import cmd_run

    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert commands["run"].get_default("func") is cmd_run  # the built-in `run` is untouched
    assert "half-added" not in commands and "own" not in commands  # nothing half-registered
    assert "hello" in commands  # a well-behaved plugin still adds its command
    assert cli.main(["hello"]) == 7

    from medfeat.plugins import get_registry

    problems = {p.plugin: p.message for p in get_registry().problems}
    assert "RuntimeError: commands broke" in problems["medfeat-cmd-raises"]
    assert (
        "adds a command named 'run', which is already a medfeat command"
        in problems["medfeat-cmd-run"]
    )
    assert "named 'validate'" in problems["medfeat-cmd-alias"]
    assert "sys.exit(4)" in problems["medfeat-cmd-exits"]
    assert all("its commands were not added" in m for d, m in problems.items())

    capsys.readouterr()
    assert cli.main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert all(dist in out for dist in COMMAND_PLUGINS if dist != "medfeat-cmd-good")
    proc = subprocess.run(
        [sys.executable, "-m", "medfeat", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.returncode == 0 and "hello" in proc.stdout and "hijacked" not in proc.stdout


def test_misspelt_and_unmarked_hooks_are_reported(fake_distribution):
    fake_distribution(
        "medfeat-typo",
        {
            "medfeat_typo.py": hook_module(
                "@hookimpl\ndef medfeat_register_backbone(register):\n    register('x', None)\n"
                "def medfeat_register_matchers(register):\n    register('y', None)\n"
                "@hookimpl\ndef register_datasets(register):\n    pass\n"
                "@hookimpl(optionalhook=True)\ndef medfeat_register_future_things(register):\n"
                "    pass\n"
                "@hookimpl(specname='medfeat_register_similarities')\n"
                "def my_similarities(register):\n    pass\n"
                "def helper():\n    pass\n"
            )
        },
        {"typo": "medfeat_typo"},
    )
    messages = [p.message for p in build_registry().problems if p.plugin == "medfeat-typo"]
    text = "\n".join(messages)
    assert (
        "medfeat_register_backbone is not a medfeat hook, so it is ignored. "
        "Did you mean medfeat_register_backbones?" in text
    )
    assert "medfeat_register_matchers is not marked with @hookimpl" in text
    assert "register_datasets is not a medfeat hook" in text
    assert len(messages) == 3  # optional hooks, specname hooks and helpers are fine


def test_a_hook_with_wrong_arguments_is_reported(fake_distribution):
    fake_distribution(
        "medfeat-args",
        {
            "medfeat_args.py": hook_module(
                "@hookimpl\ndef medfeat_register_backbones(reg):\n    pass\n"
            )
        },
        {"args": "medfeat_args"},
    )
    reg = build_registry()
    assert "its hooks are invalid" in reg.problems[0].message and "reg" in reg.problems[0].message
    assert "medfeat-args" not in reg.plugins


RUNTIME_FAILURE = hook_module("""
def lookup(values):
    return values["missing"]

def crash(args):
    return lookup({})

class Crashing:
    def register(self, *args, **kwargs):
        return lookup({})

@hookimpl
def medfeat_register_optimisers(register):
    register("crashing", lambda c, ctx: Crashing())

@hookimpl
def medfeat_register_commands(cli):
    cli.add_parser("crash").set_defaults(func=crash)
""")


def test_a_plugins_crash_at_run_time_is_blamed_on_the_plugin(fake_distribution, capsys):
    from medfeat.plugins import get_registry, plugin_fault

    fake_distribution(
        "medfeat-crash", {"medfeat_crash.py": RUNTIME_FAILURE}, {"crash": "medfeat_crash"}
    )
    # through the CLI: a plugin's command that crashes
    code = main(["crash"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1 and "Traceback" not in err
    assert (
        "Plugin failure: the plugin medfeat-crash failed (in medfeat_crash line 4): KeyError" in err
    )
    assert "KeyError: 'missing'" in err and "pip uninstall medfeat-crash" in err
    assert "This is a bug" not in err
    # a component's method, called by medfeat: the same blame, for any runner that reports it
    optimiser = get_registry().get("optimiser", "crashing").build({}, None)
    try:
        optimiser.register(None, None)
    except KeyError as exc:
        fault = plugin_fault(exc)
    assert fault is not None and "the plugin medfeat-crash failed" in str(fault)
    # medfeat's own bugs are still reported as medfeat's
    try:
        {}["x"]
    except KeyError as exc:
        assert plugin_fault(exc) is None
