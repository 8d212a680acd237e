"""`medfeat bench` on a generated lung4dct case folder: per-case results, a clean error for an
unknown case, and only rank 0 working under torchrun."""

import json

import numpy as np

from medfeat.cli.main import main
from medfeat.io.images import write_image
from medfeat.phantoms import breathing_phantom

PIPELINE = """\
kind: registration
data: {name: breathing-phantom}
backbone: {name: mind-ssc, radius_mm: 5.0, dilation_mm: 5.0}
optimiser:
  name: convex-adam
  grid_spacing_mm: 10
  search_radius_mm: 30
  io_spacing_mm: 5
  adam_lr_mm: 5
  adam_iterations: 60
"""


def make_case(root, name, seed):
    pair = breathing_phantom((32, 32, 32), 5.0, amplitude_mm=8.0, num_vessels=15, seed=seed)
    case = root / name
    case.mkdir(parents=True)
    write_image(pair.fixed, case / "T00.nii.gz")
    write_image(pair.moving, case / "T50.nii.gz")
    for phase, pts in (("T00", pair.fixed_points), ("T50", pair.moving_points)):
        rows = pair.fixed.grid.world_to_array_index(
            pts.points
        )  # numpy (k, j, i) order, like DIR-Lab here
        np.savetxt(case / f"landmarks_{phase}.txt", rows, fmt="%.4f")
    return pair


def test_bench_on_generated_lung4dct_layout(tmp_path, capsys):
    root = tmp_path / "lung"
    make_case(root, "case_a", 0)
    make_case(root, "case_b", 1)
    p = tmp_path / "p.yaml"
    p.write_text(PIPELINE)
    out = tmp_path / "bench"
    assert (
        main(
            ["-q", "bench", str(p), "--dataset", "lung4dct", "--root", str(root), "--out", str(out)]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())["cases"]
    assert set(results) == {"case_a", "case_b"}
    for row in results.values():
        assert set(row) == {
            "tre_mm_before",
            "tre_mm_after",
            "tre_mm_p95",
            "sdlogj",
            "folding_pct",
            "seconds",
            "peak_rss_mb",
        }
        assert row["tre_mm_after"] < 0.6 * row["tre_mm_before"]
        assert row["peak_rss_mb"] > 0
    assert "| **mean** |" in (out / "results.md").read_text()
    # selecting a case that does not exist is a clean error
    assert (
        main(
            [
                "-q",
                "bench",
                str(p),
                "--dataset",
                "lung4dct",
                "--root",
                str(root),
                "--cases",
                "case_z",
                "--out",
                str(tmp_path / "b2"),
            ]
        )
        == 2
    )
    assert "case_z" in capsys.readouterr().err


def test_bench_on_a_torchrun_rank_above_0_leaves_the_work_to_rank_0(tmp_path, monkeypatch):
    root = tmp_path / "lung"
    make_case(root, "case_a", 0)
    p = tmp_path / "p.yaml"
    p.write_text(PIPELINE)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    out = tmp_path / "bench"
    args = ["-q", "bench", str(p), "--dataset", "lung4dct", "--root", str(root), "--out", str(out)]
    assert main(args) == 0
    assert not (out / "results.json").exists()


CHEAP = """\
kind: registration
data: {name: breathing-phantom}
backbone: {name: intensity}
optimiser: {name: convex-adam, grid_spacing_mm: 10, search_radius_mm: 10, adam_iterations: 0}
"""


def _small_case(root, name, seed):
    pair = breathing_phantom((16, 16, 16), 5.0, amplitude_mm=5.0, num_vessels=6, seed=seed)
    case = root / name
    case.mkdir(parents=True)
    write_image(pair.fixed, case / "T00.nii.gz")
    write_image(pair.moving, case / "T50.nii.gz")
    for phase, pts in (("T00", pair.fixed_points), ("T50", pair.moving_points)):
        np.savetxt(
            case / f"landmarks_{phase}.txt", pair.fixed.grid.world_to_array_index(pts.points)
        )


def test_bench_runs_every_case_and_records_the_broken_one(tmp_path, capsys):
    root = tmp_path / "lung"
    for i, name in enumerate(("case_a", "case_b", "case_c")):
        _small_case(root, name, i)
    (root / "case_b" / "T50.nii.gz").write_bytes(b"broken")
    p = tmp_path / "p.yaml"
    p.write_text(CHEAP)
    out = tmp_path / "bench"
    args = ["-q", "bench", str(p), "--dataset", "lung4dct", "--root", str(root), "--out", str(out)]
    assert main(args) == 2
    assert "case_b" in capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert set(results["cases"]) == {"case_a", "case_c"}
    assert set(results["failed"]) == {"case_b"} and "T50.nii.gz" in results["failed"]["case_b"]
    table = (out / "results.md").read_text()
    assert "1 case(s) failed" in table and "`case_b`" in table


def test_bench_data_section_is_data_not_yaml_text(tmp_path, capsys):
    root = tmp_path / "it's [a] root, {x}"
    _small_case(root, "case_a", 0)
    p = tmp_path / "p.yaml"
    p.write_text(CHEAP)
    out = tmp_path / "bench"
    args = ["-q", "bench", str(p), "--dataset", "lung4dct", "--root", str(root), "--out", str(out)]
    assert main([*args, "--cases", "case_a", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "fixed_phase: T00" in printed and "moving_phase: T50" in printed
    assert json.loads((out / "results.json").read_text())["cases"].keys() == {"case_a"}
    # a crafted --cases cannot swap the phases: it is only a (wrong) case name
    crafted = "case_a], fixed_phase: T50, moving_phase: T00, x: ["
    assert main([*args[:-1], str(tmp_path / "b2"), "--cases", crafted]) == 2
    err = capsys.readouterr().err
    assert "fixed_phase: T50" in " ".join(err.split()) and not (tmp_path / "b2").exists()


def test_bench_section_builder_splits_cases():
    from pathlib import Path

    from medfeat.cli.bench import data_section

    assert data_section("lung4dct", Path("a'b"), " c1, c2 ,") == {
        "name": "lung4dct",
        "root": "a'b",
        "cases": ["c1", "c2"],
    }
