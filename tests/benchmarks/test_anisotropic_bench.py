"""Pure parts of benchmarks/anisotropic_vs_peers.py: landmarks, generated pipelines, tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from benchmarks import anisotropic_vs_peers as bench
from benchmarks.aniso_cases import SyntheticPair, crop_to, draw_landmarks
from benchmarks.aniso_deformation import random_deformation
from benchmarks.aniso_orientation import ORIENTATIONS

from medfeat.geometry import Grid, Image


def test_landmarks_lie_in_the_body_and_map_exactly():
    grid = Grid((20, 40, 40), (1.0, 1.0, 2.0), (-20.0, -20.0, -20.0), np.eye(3))
    mask = np.zeros(grid.shape, bool)
    mask[5:15, 10:30, 8:32] = True
    lo, hi = grid.world_extent()
    deformation = random_deformation(2, lo, hi, amplitude_mm=2.0, sigma_mm=15.0)
    fixed = Image(np.zeros(grid.shape, np.float32), grid)
    p, q = draw_landmarks(fixed, mask, deformation, grid, n=50, seed=4)
    assert p.shape == q.shape == (50, 3)
    idx = np.rint(grid.world_to_array_index(p)).astype(int)
    assert mask[tuple(idx.T)].all()
    assert np.abs(deformation.moving_to_fixed(q) - p).max() < 1e-6
    again, _ = draw_landmarks(fixed, mask, deformation, grid, n=50, seed=4)
    assert np.array_equal(p, again)
    with pytest.raises(ValueError, match="landmarks fit"):
        draw_landmarks(fixed, mask, deformation, grid, n=10_000, seed=4)


def test_crop_keeps_world_positions():
    grid = Grid((5, 6, 7), (0.5, 1.0, 2.0), (1.0, 2.0, 3.0), np.eye(3)[:, [1, 0, 2]] * [1, 1, -1])
    image = Image(np.arange(grid.num_voxels, dtype=np.float32).reshape(grid.shape), grid)
    crop = crop_to(image, np.array([1, 2, 3]), np.array([4, 6, 99]))
    assert crop.grid.shape == (3, 4, 4)
    world = crop.grid.array_index_to_world(np.array([[0.0, 0.0, 0.0], [2.0, 3.0, 3.0]]))
    old = np.rint(grid.world_to_array_index(world)).astype(int)
    assert old.tolist() == [[1, 2, 3], [3, 5, 6]]
    assert crop.numpy()[2, 3, 3] == image.numpy()[3, 5, 6]


def _pair(tmp_path: Path) -> SyntheticPair:
    files = {o: tmp_path / f"moving_{o}.mha" for o in ORIENTATIONS}
    labels = {o: tmp_path / f"labels_{o}.mha" for o in ORIENTATIONS}
    d = random_deformation(0, np.zeros(3), np.full(3, 50.0))
    pts = np.zeros((1, 3))
    return SyntheticPair(
        "ct", "CT", tmp_path / "f.nii.gz", tmp_path / "fl.nii.gz", files, labels,
        tmp_path / "pf.csv", tmp_path / "pm.csv", pts, pts, d,
    )  # fmt: skip


def test_generated_pipeline_keeps_every_lung_hyper_parameter(tmp_path):
    path = bench.synthetic_pipeline(_pair(tmp_path), "left-handed", tmp_path)
    ours = yaml.safe_load(path.read_text())
    lung = yaml.safe_load(bench.LUNG_PIPELINE.read_text())
    changed = {"data", "fixed_mask", "output", "description"}
    assert {k: v for k, v in ours.items() if k not in changed} == {
        k: v for k, v in lung.items() if k not in changed
    }
    assert ours["fixed_mask"] == "auto-body"
    assert ours["data"]["moving"].endswith("moving_left-handed.mha")
    assert ours["data"]["moving_labels"].endswith("labels_left-handed.mha")
    assert ours["data"]["fixed_landmarks"]["space"] == "lps"


def test_abdomen_variants_differ_only_in_prealignment(tmp_path):
    cfgs = [
        yaml.safe_load(bench.abdomen_pipeline(tmp_path, v, tmp_path).read_text())
        for v in bench.ABDOMEN_VARIANTS
    ]
    assert [[s["name"] for s in c["prealignment"]] for c in cfgs] == [
        ["centroids"],
        ["centroids", "affine"],
        ["centroids", "block-matching"],
        ["centroids", "block-matching"],
    ]
    assert [c["prealignment"][-1].get("transform") for c in cfgs[2:]] == ["rigid", "affine"]
    rest = [{k: v for k, v in c.items() if k != "prealignment"} for c in cfgs]
    assert all(r == rest[0] for r in rest)
    assert cfgs[0]["data"]["moving"] == str(
        (tmp_path / "abdomen-ct" / "example_ct_sm.nii.gz").resolve()
    )
    files = {p.name for p in tmp_path.glob("pipeline-*.yaml")}
    assert len(files) == len(bench.ABDOMEN_VARIANTS)  # one file each, none overwritten


def _rec(tres: dict[str, float]) -> dict:
    rows = {o: {"tre_after": t, "tre_before": 4.0, "dice_after": 0.8} for o, t in tres.items()}
    return {"title": "T", "headline": "permuted", "medfeat": rows, "peers": {}, "notes": {}}


def test_orientation_table_flags_a_spread_over_half_a_millimetre():
    ok = bench.table({"cases": {"ct": _rec(dict.fromkeys(ORIENTATIONS, 1.0))}})
    assert "| yes |" in ok and "| NO |" not in ok
    spread = dict.fromkeys(ORIENTATIONS, 1.0) | {"left-handed": 1.6}
    bad = bench.table({"cases": {"ct": _rec(spread)}})
    assert "| 0.600 | NO |" in bad
    only_one = bench.table({"cases": {"ct": _rec({"permuted": 1.0})}})
    assert "| yes |" not in only_one and "| NO |" not in only_one


def test_mean_dice_ignores_absent_labels():
    assert bench.mean_of({"1": 0.5, "2": float("nan"), "3": 1.0}) == pytest.approx(0.75)
    assert bench.mean_of({}) is None
