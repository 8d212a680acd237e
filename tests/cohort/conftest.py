"""A generated phantom cohort (csv-pairs, voxel landmarks) and a toy plugin whose optimiser can
sleep, kill its worker process once, or refuse to be built."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TOY_PLUGIN = """
import os, time
import numpy as np
from pydantic import Field
from medfeat.api import ConfigModel, DisplacementField, MedfeatError, RegistrationResult, hookimpl

class ToyCfg(ConfigModel):
    sleep_s: float = Field(0.0, description="Seconds each case takes.")
    kill_flag: str | None = Field(None, description="If this file is absent: create it, die.")
    refuse: bool = Field(False, description="Refuse to be built.")

class Toy:
    def __init__(self, cfg):
        self.cfg = cfg
    def register(self, fixed, moving, ff, fm, *, similarity=None, regulariser=None, fixed_mask=None):
        if self.cfg.kill_flag and not os.path.exists(self.cfg.kill_flag):
            open(self.cfg.kill_flag, "w").write(str(os.getpid()))
            os._exit(1)  # the worker process dies in the middle of a case
        time.sleep(self.cfg.sleep_s)
        zero = np.zeros((3, *fixed.grid.shape))
        return RegistrationResult(DisplacementField(zero, fixed.grid), DisplacementField(zero, fixed.grid, "moving_to_fixed"))

def make(cfg, ctx):
    if cfg.refuse:
        raise MedfeatError("the toy optimiser refuses to be built.", remedy="Set refuse: false.")
    return Toy(cfg)

@hookimpl
def medfeat_register_optimisers(register):
    register("toy", make, config=ToyCfg, summary="Zero field; can sleep or die.")
"""

REAL = (
    "backbone: {name: mind-ssc, radius_mm: 5.0, dilation_mm: 5.0}\n"
    "optimiser: {name: convex-adam, grid_spacing_mm: 10, search_radius_mm: 20, "
    "io_spacing_mm: 5, adam_lr_mm: 5, adam_iterations: 5}\n"
)


def toy(**options) -> str:
    opts = "".join(f", {k}: {v}" for k, v in options.items())
    return "backbone: {name: intensity}\n" + f"optimiser: {{name: toy{opts}}}\n"


def make_cohort(root: Path, n: int = 3, shape: int = 16, body: str = "") -> Path:
    """``n`` tiny phantom pairs listed in ``pairs.csv``; returns the pipeline file."""
    from medfeat.io.images import write_image
    from medfeat.phantoms import breathing_phantom

    root.mkdir(parents=True, exist_ok=True)
    rows = ["case_id,fixed,moving,fixed_landmarks,moving_landmarks"]
    for i in range(n):
        pair = breathing_phantom((shape,) * 3, 5.0, amplitude_mm=6.0, num_vessels=6, seed=i)
        write_image(pair.fixed, root / f"f{i}.nii.gz")
        write_image(pair.moving, root / f"m{i}.nii.gz")
        for tag, image, pts in (("f", pair.fixed, pair.fixed_points), ("m", pair.moving, pair.moving_points)):  # fmt: skip
            np.savetxt(root / f"{tag}{i}.csv", image.grid.world_to_array_index(pts.points), delimiter=",")  # fmt: skip
        rows.append(f"c{i},f{i}.nii.gz,m{i}.nii.gz,f{i}.csv,m{i}.csv")
    (root / "pairs.csv").write_text("\n".join(rows) + "\n")
    yaml = root / "p.yaml"
    yaml.write_text(
        "kind: registration\n"
        "data: {name: csv-pairs, csv: pairs.csv, landmark_axis_order: zyx}\n" + (body or toy())
    )
    return yaml


@pytest.fixture
def toy_plugin(fake_distribution) -> Path:
    """The toy plugin installed as ``medfeat-toy``; returns its site folder (for PYTHONPATH)."""
    return fake_distribution("medfeat-toy", {"medfeat_toy.py": TOY_PLUGIN}, {"toy": "medfeat_toy"})


@pytest.fixture
def medfeat_cli(toy_plugin):
    """``start(*args)``: ``python -m medfeat ARGS`` in a subprocess that sees the toy plugin."""

    def start(*args: str) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(toy_plugin), *sys.path])}
        return subprocess.Popen(
            [sys.executable, "-m", "medfeat", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    return start


def leftovers(out: Path) -> list[str]:
    """Temporary files, staging folders and locks under ``out``."""
    return [
        str(p.relative_to(out))
        for p in out.rglob("*")
        if ".tmp" in p.name or p.name in (".staging", ".medfeat.lock")
    ]


@pytest.fixture
def cohort():
    """Helpers: ``make(root, n, shape, body)``, ``toy(**options)``, ``real`` (MIND + ConvexAdam
    sections), ``leftovers(out)``."""
    import types

    return types.SimpleNamespace(make=make_cohort, toy=toy, real=REAL, leftovers=leftovers)
