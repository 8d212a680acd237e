"""The report of finished output folders: pages, figures, derived files, and what is missing."""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from medfeat.errors import InputFileError
from medfeat.geometry import Grid, Image
from medfeat.io.images import read_image, write_image
from medfeat.report import build_report


def notes(html_path: Path, kind: str | None = None) -> list[str]:
    html = html_path.read_text(encoding="utf-8")
    found = re.findall(r'class="note (\w+)">([^<]*)', html)
    return [text for k, text in found if kind is None or k == kind]


def images(html_path: Path) -> list[Path]:
    srcs = re.findall(r'<img src="([^"]+)"', html_path.read_text(encoding="utf-8"))
    return [html_path.parent / s for s in srcs]


def test_phantom_report_has_every_registration_figure(phantom_run):
    index = build_report(phantom_run)
    assert index == phantom_run / "report" / "index.html"
    case_page = index.parent / "breathing-phantom-seed0.html"
    assert 'href="breathing-phantom-seed0.html"' in index.read_text(encoding="utf-8")
    assert notes(case_page, "error") == [] and notes(case_page, "missing") == []
    pngs = {p.name for p in images(case_page)}
    assert pngs == {
        "checkerboard.png", "difference.png", "labels.png", "jacobian.png", "displacement.png",
        "landmark_errors.png", "worst_landmarks.png",
    }  # fmt: skip
    for png in images(case_page):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = case_page.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html  # opens offline


def test_jacobian_nifti_matches_the_field(phantom_run):
    from medfeat.io.fields import read_displacement_field
    from medfeat.metrics.jacobian import folding_pct, jacobian_determinant_mm

    build_report(phantom_run)
    case = "breathing-phantom-seed0"
    det = read_image(phantom_run / "report" / case / "jacobian_determinant.nii.gz")
    field = read_displacement_field(phantom_run / case / "field_fixed_to_moving.nii.gz")
    assert det.grid.same_as(field.grid)
    np.testing.assert_allclose(det.numpy(), jacobian_determinant_mm(field), rtol=1e-5, atol=1e-5)
    metrics = json.loads((phantom_run / case / "metrics.json").read_text(encoding="utf-8"))
    assert folding_pct(det.numpy()) == pytest.approx(metrics["folding_pct"])


def test_landmark_csv_reproduces_the_run_tre(phantom_run):
    build_report(phantom_run)
    case = "breathing-phantom-seed0"
    table = np.genfromtxt(
        phantom_run / "report" / case / "landmark_errors_mm.csv", delimiter=",", names=True
    )
    metrics = json.loads((phantom_run / case / "metrics.json").read_text(encoding="utf-8"))
    assert len(table) == metrics["tre_mm_after"]["n"]
    assert table["error_before_mm"].mean() == pytest.approx(
        metrics["tre_mm_before"]["mean"], rel=1e-3
    )
    assert table["error_after_mm"].mean() == pytest.approx(
        metrics["tre_mm_after"]["mean"], rel=1e-3
    )
    moved = np.stack([table[f"mapped_{a}_mm"] - table[f"moving_{a}_mm"] for a in "xyz"], axis=1)
    np.testing.assert_allclose(np.linalg.norm(moved, axis=1), table["error_after_mm"], atol=1e-3)


def test_missing_outputs_become_notes_not_errors(phantom_run):
    case = phantom_run / "breathing-phantom-seed0"
    for name in (
        "field_fixed_to_moving.nii.gz",
        "warped_moving.nii.gz",
        "fixed_landmarks_in_moving_world_lps_mm.csv",
    ):
        (case / name).unlink()
    page = build_report(phantom_run).parent / "breathing-phantom-seed0.html"
    missing = " ".join(notes(page, "missing"))
    assert "field_fixed_to_moving.nii.gz is missing" in missing
    assert notes(page, "error") == []
    # no field, no warped image: the 'after' checkerboard cannot be drawn, 'before' still is
    assert "checkerboard.png" in {p.name for p in images(page)}


def test_unavailable_inputs_are_said_and_field_figures_remain(phantom_run):
    prov = json.loads((phantom_run / "provenance.json").read_text(encoding="utf-8"))
    prov["config"]["data"]["name"] = "no-such-dataset"
    (phantom_run / "provenance.json").write_text(json.dumps(prov), encoding="utf-8")
    page = build_report(phantom_run).parent / "breathing-phantom-seed0.html"
    assert any("no-such-dataset" in n for n in notes(page, "missing"))
    assert {"jacobian.png", "displacement.png", "labels.png"} - {p.name for p in images(page)} == {
        "labels.png"
    }
    assert notes(page, "error") == []


def test_not_an_output_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InputFileError, match="not the output folder"):
        build_report(tmp_path)
    with pytest.raises(InputFileError, match="not a folder"):
        build_report(tmp_path / "absent")


def test_cohort_page_lists_every_case_sortable_with_failures(phantom_run):
    # a second case: a copy of the first with another id and a worse TRE, and a recorded failure
    metrics = json.loads((phantom_run / "metrics.json").read_text(encoding="utf-8"))
    first = "breathing-phantom-seed0"
    shutil.copytree(phantom_run / first, phantom_run / "case-b")
    worse = json.loads(json.dumps(metrics["cases"][first]))
    worse["tre_mm_after"]["mean"] = 42.0
    metrics["cases"]["case-b"] = worse
    metrics["failures"] = {"case-c": "InputFileError: fixed.nii.gz is truncated"}
    (phantom_run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    index = build_report(phantom_run)
    html = index.read_text(encoding="utf-8")
    assert '<table class="sortable">' in html
    assert 'href="case-b.html"' in html and 'href="breathing-phantom-seed0.html"' in html
    assert 'data-sort="42.0"' in html
    assert "case-c" in html and "truncated" in html
    assert "distributions.png" in {p.name for p in images(index)}
    # case-b is not in the dataset: its page says so and still shows the field figures
    page_b = index.parent / "case-b.html"
    assert any("not found again" in n for n in notes(page_b, "missing"))
    assert "jacobian.png" in {p.name for p in images(page_b)}


def test_random_weights_runs_carry_a_not_a_result_banner(phantom_run):
    metrics = json.loads((phantom_run / "metrics.json").read_text(encoding="utf-8"))
    metrics = {"random_weights": ["tiny net"], "is_result": False, **metrics}
    (phantom_run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    index = build_report(phantom_run)
    for page in (index, index.parent / "breathing-phantom-seed0.html"):
        assert "NOT A RESULT" in page.read_text(encoding="utf-8")


def _segmentation_folder(root: Path) -> Path:
    """A hand-made inference output folder whose dataset cannot be opened again."""
    grid = Grid.from_shape((12, 24, 24), (3.0, 1.0, 1.0))
    pred = np.zeros(grid.shape, np.uint8)
    pred[3:9, 6:18, 6:18] = 1
    pred[3:9, 6:10, 6:10] = 2
    (root / "s1").mkdir(parents=True)
    write_image(Image(pred, grid), root / "s1" / "labels.nii.gz")
    (root / "s1" / "metrics.json").write_text(
        json.dumps({"dice": {"1": 0.8, "2": 0.5}, "mean_dice": 0.65}), encoding="utf-8"
    )
    (root / "metrics.json").write_text(
        json.dumps(
            {"mode": "infer", "cases": {"s1": {"dice": {"1": 0.8, "2": 0.5}, "mean_dice": 0.65}}}
        ),
        encoding="utf-8",
    )
    return root


def test_segmentation_page_without_inputs_draws_predicted_masks_and_dice(tmp_path):
    folder = _segmentation_folder(tmp_path / "seg")
    index = build_report(folder)
    page = index.parent / "s1.html"
    assert {p.name for p in images(page)} == {"masks.png", "dice.png"}
    assert any(
        "provenance.json is missing" in b
        for b in re.findall(r'class="banner warning">([^<]*)', index.read_text(encoding="utf-8"))
    )
    assert notes(page, "error") == []


def test_training_curves_from_csv_and_history(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    (folder / "training_log.csv").write_text(
        "step,loss,lr\n" + "".join(f"{s},{1 / (s + 1)},0.001\n" for s in range(50))
    )
    history = [{"step": 10, "dice": 0.2, "n": 4}, {"step": 20, "dice": 0.5, "n": 4}]
    (folder / "metrics.json").write_text(
        json.dumps({"mode": "train", "steps": 50, "history": history}), encoding="utf-8"
    )
    index = build_report(folder)
    assert [p.name for p in images(index)] == ["curves.png"]
    from medfeat.report.training import find_curves

    curves, sources = find_curves(folder, {"history": history})
    assert set(curves) == {"loss", "lr", "validation dice"}
    np.testing.assert_allclose(curves["validation dice"][1], [0.2, 0.5])
    assert sources == ["training_log.csv", "metrics.json history"]


def test_training_curves_from_the_log_file(tmp_path):
    from medfeat.report.training import find_curves

    (tmp_path / "medfeat.log").write_text(
        "2026-01-01T00:00:00+00:00 INFO    step 10: loss 0.5000\n"
        "2026-01-01T00:00:01+00:00 INFO    something else\n"
        "2026-01-01T00:00:02+00:00 INFO    step 20: loss 0.2500\n",
        encoding="utf-8",
    )
    curves, sources = find_curves(tmp_path, {"mode": "pretrain"})
    steps, losses = curves["loss (from medfeat.log)"]
    assert list(steps) == [10, 20] and list(losses) == [0.5, 0.25] and sources == ["medfeat.log"]


def test_pretraining_without_history_says_so(tmp_path):
    (tmp_path / "metrics.json").write_text(
        json.dumps({"mode": "pretrain", "steps": 3}), encoding="utf-8"
    )
    index = build_report(tmp_path)
    assert any("no loss history" in n for n in notes(index, "missing"))


def test_medfeat_report_command(phantom_run, capsys):
    from medfeat.cli.report import add_parser

    parser = argparse.ArgumentParser()
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.add_argument("-q", "--quiet", action="count", default=0)
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["report", str(phantom_run)])
    assert args.func(args) == 0
    assert (phantom_run / "report" / "index.html").is_file()
    assert "index.html" in capsys.readouterr().err.replace("\n", "")


def test_case_ids_become_safe_distinct_page_names(tmp_path):
    from medfeat.report.common import Output

    taken: set[str] = set()
    names = [Output.for_case(tmp_path, c, taken).name for c in ("a b", "a_b", "index", "../x")]
    assert names == ["a_b", "a_b-2", "index-2", "x"]
