"""The ``medfeat`` command: user errors and interrupts become one paragraph and an exit status,
never a traceback; ``python -m medfeat`` is the same command."""

import subprocess
import sys

import pytest

from medfeat.cli.main import main


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "medfeat.cli.main", *args], capture_output=True, text=True
    )


@pytest.mark.parametrize(
    "yaml_text, expected",
    [
        (
            "kind: registration\ndata: {name: breathing-phantom}\noptimiser: {name: convx-adam}\n",
            "there is no deformable optimiser named 'convx-adam'",
        ),
        (
            "kind: registration\ndata: {name: breathing-phantom, seed: one}\noptimiser: {name: x}\n",
            "line 2 at 'data.seed'",
        ),
        ("kind: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_yaml_gives_clean_error(tmp_path, yaml_text, expected):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml_text)
    res = run_cli("validate", str(p))
    assert res.returncode == 2
    assert expected in res.stderr
    assert "Traceback" not in res.stderr + res.stdout


def test_missing_pipeline_file(tmp_path):
    res = run_cli("run", str(tmp_path / "nope.yaml"))
    assert res.returncode == 2 and "does not exist" in res.stderr and "Traceback" not in res.stderr


def test_debug_shows_traceback(tmp_path):
    res = run_cli("--debug", "validate", str(tmp_path / "nope.yaml"))
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_components_lists_schema(capsys):
    assert main(["components", "dataset"]) == 0
    out = capsys.readouterr().out
    assert "breathing-phantom" in out and "amplitude_mm" in out
    assert main(["components", "nonsense"]) == 2


def test_validate_names_an_unregistered_matcher(tmp_path, capsys):
    p = tmp_path / "p.yaml"
    p.write_text(
        "kind: correspondence\ndata: {name: breathing-phantom}\nbackbone: {name: intensity}\nmatcher: {name: m}\n"
    )
    assert main(["validate", str(p)]) == 2  # 'm' is not registered
    assert "no matcher named 'm'" in capsys.readouterr().err


def test_the_cli_reports_an_interrupted_run_in_one_paragraph_with_exit_130(capsys, monkeypatch):
    from medfeat.cli import main as cli
    from medfeat.errors import Interrupted

    def stopped(args):
        raise Interrupted("Training stopped at step 7.", remedy="Run it again to resume.")

    monkeypatch.setattr(cli, "cmd_plugins", stopped)
    assert cli.main(["plugins"]) == 130
    err = capsys.readouterr().err
    assert "Training stopped at step 7. Run it again to resume." in " ".join(err.split())
    assert "Traceback" not in err


def test_python_dash_m_medfeat_is_the_cli():
    proc = subprocess.run(
        [sys.executable, "-m", "medfeat", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "run" in proc.stdout


GOOD = "kind: registration\ndata: {name: breathing-phantom}\noptimiser: {name: convex-adam}\n"


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["a.b.c=1"], "command line override 'a.b.c=1' at 'a': unknown option 'a'"),
        (["kind=[registration]"], "override 'kind=[registration]' at 'kind': `kind` must be one"),
        (["optimiser.adam_iterations=true"], "expected a number, but it is a boolean"),
        (["optimiser.smoothness_weight=.inf"], "finite number"),
    ],
)
def test_bad_overrides_are_clear_and_blamed_on_the_override(tmp_path, capsys, overrides, expected):
    p = tmp_path / "p.yaml"
    p.write_text(GOOD)
    assert main(["validate", str(p), *overrides]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert expected in err  # printed as written: `[registration]` is not eaten as markup
    assert "line 1" not in err and "internal error" not in err


def test_a_yaml_alias_bomb_is_one_clear_message(tmp_path):
    levels = "".join(
        f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]\n" for i in range(1, 10)
    )
    p = tmp_path / "bomb.yaml"
    p.write_text("l0: &l0 [" + ", ".join(["lol"] * 10) + "]\n" + levels + GOOD)
    res = run_cli("validate", str(p))
    assert res.returncode == 2, res.stderr
    assert "alias bomb" in res.stderr
    assert "MemoryError" not in res.stderr and "Traceback" not in res.stderr


def test_a_failing_plugin_factory_is_blamed_on_the_plugin(fake_distribution, tmp_path, capsys):
    fake_distribution(
        "medfeat-fact",
        {
            "medfeat_fact.py": "from medfeat.api import hookimpl\n"
            "def make(config, context):\n    raise RuntimeError('weights missing')\n"
            "@hookimpl\ndef medfeat_register_optimisers(register):\n"
            "    register('fact', make)\n"
        },
        {"fact": "medfeat_fact"},
    )
    p = tmp_path / "p.yaml"
    p.write_text(
        GOOD.replace("convex-adam", "fact").replace("phantom}", "phantom, shape: [8, 8, 8]}")
    )
    code = main(["-q", "run", str(p), "--out", str(tmp_path / "out")])
    err = " ".join(capsys.readouterr().err.split())
    assert code != 0 and "Traceback" not in err
    assert "the deformable optimiser 'fact' of the plugin medfeat-fact failed" in err
    assert "RuntimeError: weights missing" in err and "pip uninstall medfeat-fact" in err
    assert "This is a bug" not in err


@pytest.mark.parametrize("kind", ["similarities", "feature-transforms", "deformable optimisers"])
def test_components_takes_a_kind_in_any_usual_spelling(kind, capsys):
    assert main(["components", kind]) == 0
    assert "Configuration error" not in capsys.readouterr().err
