"""`medfeat bench` and the lung4dct adapter, on a generated case folder and (when present) the real data."""

import json

import numpy as np
import pytest

from medfeat.cli.main import main
from medfeat.io.images import write_image
from medfeat.phantoms import breathing_phantom

PIPELINE = """\
kind: registration
data: {name: breathing-phantom}
backbone: {name: mind-ssc, radius_vox: 1}
optimiser: {name: convex-adam, grid_spacing_vox: 2, search_radius_vox: 3, adam_iterations: 60}
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


@pytest.mark.realdata
def test_lung4dct_adapter_on_real_data(shared_data):
    from medfeat.builtins.datasets import Lung4DCTConfig, Lung4DCTDataset

    cases = list(
        Lung4DCTDataset(
            Lung4DCTConfig(root=shared_data / "lung4dct", cases=["case_002"])
        ).registration_cases()
    )
    case = cases[0]
    assert len(case.fixed_points) == len(case.moving_points) == 375
    d = np.linalg.norm(case.fixed_points.points - case.moving_points.points, axis=1).mean()
    assert d == pytest.approx(4.4, abs=0.05)  # the README's initial landmark distance for case 2
    assert np.allclose(np.diag(case.fixed.grid.direction), [1, 1, -1])


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
