"""The CLI turns user errors into one paragraph and a non-zero exit, never a traceback."""

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


def test_print_config(tmp_path, capsys):
    p = tmp_path / "p.yaml"
    p.write_text(
        "kind: correspondence\ndata: {name: breathing-phantom}\nbackbone: {name: intensity}\nmatcher: {name: m}\n"
    )
    assert main(["validate", str(p)]) == 2  # 'm' is not registered
    assert "no matcher named 'm'" in capsys.readouterr().err
