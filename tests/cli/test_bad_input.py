"""Bad input through the CLI: one clear paragraph, exit status 2, no traceback, nothing half-written."""

import numpy as np
import pytest
import SimpleITK as sitk

from medfeat.cli.main import main

OPTIMISER_PLUGIN = """
import numpy as np
from pydantic import BaseModel
from medfeat.api import hookimpl
from medfeat.components import RegistrationResult
from medfeat.geometry import DisplacementField

class Cfg(BaseModel):
    claim_gib: float = 0.0

class Zero:
    memory_remedy = "Lower claim_gib."
    def __init__(self, cfg):
        self.cfg = cfg
    def estimate_memory_bytes(self, *features):
        return int(self.cfg.claim_gib * 2**30)
    def register(self, fixed, moving, ff, fm, **_):
        g = fixed.grid
        return RegistrationResult(DisplacementField(np.zeros((g.ndim, *g.shape)), g))

@hookimpl
def medfeat_register_optimisers(register):
    register("zero", lambda c, ctx: Zero(c), config=Cfg)
"""


@pytest.fixture
def zero_plugin(fake_distribution):
    fake_distribution(
        "medfeat-zero", {"medfeat_zero.py": OPTIMISER_PLUGIN}, {"zero": "medfeat_zero"}
    )


def write(path, array, spacing=(2.0, 2.0, 2.0), origin=None):
    img = sitk.GetImageFromArray(np.asarray(array, dtype=np.float32))
    img.SetSpacing(spacing[: img.GetDimension()])
    if origin is not None:
        img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))
    return path


def pipeline(tmp_path, extra_data="", optimiser="{name: zero}"):
    p = tmp_path / "pipe.yaml"
    p.write_text(
        "kind: registration\n"
        f"data: {{name: files, fixed: {tmp_path / 'f.nii.gz'}, moving: {tmp_path / 'm.nii.gz'}{extra_data}}}\n"
        f"optimiser: {optimiser}\n"
    )
    return p


def run_expect_error(capsys, p, out, *expected):
    code = main(["-q", "run", str(p), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    for e in expected:
        assert e in err, err
    assert not (out / "provenance.json").exists()
    return err


@pytest.fixture
def volumes(tmp_path):
    rng = np.random.default_rng(0)
    write(tmp_path / "f.nii.gz", rng.random((8, 9, 10)))
    write(tmp_path / "m.nii.gz", rng.random((8, 9, 10)))
    return tmp_path


def test_valid_pair_runs(zero_plugin, volumes, capsys):
    out = volumes / "out"
    assert main(["-q", "run", str(pipeline(volumes)), "--out", str(out)]) == 0
    assert (out / "provenance.json").is_file()
    # a second run into the same folder is refused: nothing is lost
    run_expect_error_existing = main(["-q", "run", str(pipeline(volumes)), "--out", str(out)])
    assert run_expect_error_existing == 2
    assert "earlier run" in capsys.readouterr().err


def test_missing_file(zero_plugin, volumes, capsys):
    (volumes / "m.nii.gz").unlink()
    run_expect_error(capsys, pipeline(volumes), volumes / "out", "m.nii.gz", "does not exist")


def test_corrupt_file(zero_plugin, volumes, capsys):
    (volumes / "m.nii.gz").write_bytes(b"this is not a nifti file at all" * 10)
    run_expect_error(capsys, pipeline(volumes), volumes / "out", "m.nii.gz")


def test_truncated_file(zero_plugin, volumes, capsys):
    data = (volumes / "m.nii.gz").read_bytes()
    (volumes / "m.nii.gz").write_bytes(data[: len(data) // 2])
    run_expect_error(capsys, pipeline(volumes), volumes / "out", "m.nii.gz")


def test_nan_image(zero_plugin, volumes, capsys):
    arr = np.ones((8, 9, 10))
    arr[2, 3, 4] = np.nan
    write(volumes / "m.nii.gz", arr)
    run_expect_error(capsys, pipeline(volumes), volumes / "out", "NaN")


def test_wrong_dimensionality(zero_plugin, volumes, capsys):
    write(volumes / "m.nii.gz", np.random.default_rng(1).random((9, 10)))
    run_expect_error(capsys, pipeline(volumes), volumes / "out", "Geometry error")


def test_grids_that_cannot_be_related(zero_plugin, volumes, capsys):
    write(
        volumes / "m.nii.gz",
        np.random.default_rng(1).random((8, 9, 10)),  # not constant: that is refused first
        origin=(5000.0, 0.0, 0.0),
    )
    run_expect_error(capsys, pipeline(volumes), volumes / "out", "Geometry error", "overlap")


def test_landmark_count_mismatch(zero_plugin, volumes, capsys):
    (volumes / "a.csv").write_text("1,2,3\n4,5,6\n2,2,2\n")
    (volumes / "b.csv").write_text("1,2,3\n4,5,6\n")
    extra = f", fixed_landmarks: {{path: {volumes / 'a.csv'}, space: lps}}, moving_landmarks: {{path: {volumes / 'b.csv'}, space: lps}}"
    run_expect_error(
        capsys, pipeline(volumes, extra), volumes / "out", "Landmark counts differ", "3", "2"
    )


def test_too_large_for_memory(zero_plugin, volumes, capsys):
    err = run_expect_error(
        capsys,
        pipeline(volumes, optimiser="{name: zero, claim_gib: 100000}"),
        volumes / "out",
        "Resource error",
        "Lower claim_gib",
    )
    assert "GiB" in err


def test_plugin_import_failure_named_in_unknown_component_error(fake_distribution, volumes, capsys):
    fake_distribution(
        "medfeat-broken",
        {"medfeat_broken.py": "raise ImportError('needs libfoo')\n"},
        {"b": "medfeat_broken"},
    )
    run_expect_error(
        capsys,
        pipeline(volumes),
        volumes / "out",
        "no deformable optimiser named 'zero'",
        "medfeat-broken",
    )
