"""The registration pipeline through `medfeat run`: outputs, Dice and HD95 per label, one read per input."""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from medfeat.cli.main import main
from medfeat.geometry import Grid, Image
from medfeat.io.images import read_image, write_image

SHIFT_PLUGIN = """
import numpy as np
from medfeat.api import ConfigModel, DisplacementField, RegistrationResult, hookimpl

class Cfg(ConfigModel):
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

class Shift:
    def __init__(self, cfg):
        self.shift = np.asarray(cfg.shift_mm, dtype=float)
    def register(self, fixed, moving, ff, fm, **_):
        g = fixed.grid
        data = np.broadcast_to(self.shift[:, None, None, None], (3, *g.shape)).copy()
        return RegistrationResult(DisplacementField(data, g), info={"shift_x_mm": float(self.shift[0])})

@hookimpl
def medfeat_register_optimisers(register):
    register("shift", lambda c, ctx: Shift(c), config=Cfg)
"""


@pytest.fixture
def shift_plugin(fake_distribution):
    fake_distribution("medfeat-shift", {"medfeat_shift.py": SHIFT_PLUGIN}, {"s": "medfeat_shift"})


@pytest.fixture
def pair(tmp_path) -> dict[str, Path]:
    """A cube (label 3) that moves 4 mm (two 2-mm voxels) along x; label 9 only in the moving map."""
    grid = Grid.from_shape((16, 16, 16), (2.0, 1.0, 1.0), origin=(-3.0, 5.0, 1.0))
    fixed_labels = np.zeros(grid.shape, np.uint8)
    moving_labels = np.zeros(grid.shape, np.uint8)
    fixed_labels[4:12, 4:12, 4:12] = 3
    moving_labels[4:12, 4:12, 6:14] = 3
    moving_labels[0:2, 0:2, 0:2] = 9
    rng = np.random.default_rng(0)
    images = {
        "fixed": (0.1 * fixed_labels + rng.random(grid.shape)).astype(np.float32),
        "moving": (0.1 * moving_labels + rng.random(grid.shape)).astype(np.float32),
        "fixed_labels": fixed_labels,
        "moving_labels": moving_labels,
    }
    return {k: write_image(Image(v, grid), tmp_path / f"{k}.nii.gz") for k, v in images.items()}


def pipeline(tmp_path, pair, shift_mm) -> Path:
    path = tmp_path / "pipe.yaml"
    data = ", ".join(f"{k}: {v}" for k, v in pair.items())
    path.write_text(
        f"kind: registration\ndata: {{name: files, case_id: cube, {data}}}\n"
        f"backbone: {{name: intensity}}\noptimiser: {{name: shift, shift_mm: {list(shift_mm)}}}\n"
    )
    return path


def test_dice_and_hd95_per_label_before_and_after(shift_plugin, pair, tmp_path):
    out = tmp_path / "out"
    assert main(["-q", "run", str(pipeline(tmp_path, pair, (4.0, 0, 0))), "--out", str(out)]) == 0
    m = json.loads((out / "cube" / "metrics.json").read_text())
    assert json.loads((out / "metrics.json").read_text())["cases"]["cube"] == m
    assert m["dice_before"] == {"3": pytest.approx(0.75), "9": 0.0}
    assert m["hd95_mm_before"] == {"3": pytest.approx(4.0), "9": None}  # 9: not in fixed -> NaN
    assert m["dice_after"] == {"3": 1.0}  # warped(x) = moving(x + 4 mm): the cube is back
    assert m["hd95_mm_after"] == {"3": 0.0}
    assert m["info_shift_x_mm"] == 4.0 and m["folding_pct"] == 0.0
    warped = read_image(out / "cube" / "warped_moving_labels.nii.gz")
    assert np.array_equal(warped.numpy(), read_image(pair["fixed_labels"]).numpy())
    for name in ("field_fixed_to_moving.nii.gz", "warped_moving.nii.gz"):
        assert (out / "cube" / name).is_file()


def test_each_input_file_is_read_once(shift_plugin, pair, tmp_path, monkeypatch):
    """One streamed pass by medfeat (checksum, completeness, NaN/Inf) and one decode by
    SimpleITK per input; nibabel never opens it, and provenance does not hash it again."""
    import nibabel
    import SimpleITK

    inputs = {p.resolve() for p in pair.values()}
    reads: Counter[tuple[str, Path]] = Counter()

    def counting(reader: str, real):
        def wrapper(file, *args, **kwargs):
            if not isinstance(file, int) and Path(os.fsdecode(file)).resolve() in inputs:
                reads[reader, Path(os.fsdecode(file)).resolve()] += 1
            return real(file, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(builtins, "open", counting("python", builtins.open))
    monkeypatch.setattr(io, "open", counting("python", io.open))
    monkeypatch.setattr(SimpleITK, "ReadImage", counting("sitk", SimpleITK.ReadImage))
    monkeypatch.setattr(nibabel, "load", counting("nibabel", nibabel.load))
    out = tmp_path / "out"
    # the QC report reads the inputs again after the run, as `medfeat report` does: not counted
    yaml = str(pipeline(tmp_path, pair, (0, 0, 0)))
    assert main(["-q", "run", yaml, "--out", str(out), "output.report=false"]) == 0
    monkeypatch.undo()
    expected = Counter({(reader, p): 1 for p in inputs for reader in ("python", "sitk")})
    assert reads == expected
    recorded = json.loads((out / "provenance.json").read_text())["cases"]["cube"]["inputs"]
    assert {r["path"]: r["sha256"] for r in recorded} == {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in inputs
    }
