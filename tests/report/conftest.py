"""A small finished phantom registration run, shared by the report tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

PHANTOM = """\
kind: registration
seed: 0
device: cpu
data: {name: breathing-phantom, shape: [32, 36, 40], spacing_mm: 5.0, num_vessels: 12}
backbone: {name: mind-ssc}
optimiser: {name: convex-adam, grid_spacing_mm: 15, search_radius_mm: 15, io_spacing_mm: 10, adam_iterations: 10}
output: {dir: out, report: false}
"""


@pytest.fixture(scope="session")
def phantom_run_master(tmp_path_factory) -> Path:
    from medfeat.cli.main import main

    root = tmp_path_factory.mktemp("phantom-run")
    (root / "pipeline.yaml").write_text(PHANTOM, encoding="utf-8")
    out = root / "out"
    assert main(["-q", "run", str(root / "pipeline.yaml"), "--out", str(out)]) == 0
    return out


@pytest.fixture
def phantom_run(phantom_run_master, tmp_path) -> Path:
    """A private copy of the finished run (tests may delete files from it)."""
    out = tmp_path / "run"
    shutil.copytree(phantom_run_master, out)
    shutil.rmtree(out / "report", ignore_errors=True)
    return out
