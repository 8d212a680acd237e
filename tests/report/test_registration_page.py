"""The registration case page: what it reads from the case folder, and work it does once."""

from __future__ import annotations

import numpy as np

from medfeat.report import build_report
from medfeat.report import registration as reg_page
from medfeat.report.common import Output, read_points_csv

CASE = "breathing-phantom-seed0"


def test_points_csv_of_every_medfeat_layout(tmp_path):
    pts = np.array([[1.5, -2.0, 3.25], [4.0, 5.0, -6.5]])
    (tmp_path / "points.csv").write_text(
        "# medfeat points: world mm, space=LPS\nlabel,x,y,z\nF-1,1.5,-2,3.25\nF-2,4,5,-6.5\n"
    )
    (tmp_path / "matches.csv").write_text(
        "x_mm_lps,y_mm_lps,z_mm_lps,score\n1.5,-2,3.25,0.9\n4,5,-6.5,0.25\n"
    )
    (tmp_path / "plain.csv").write_text("x,y,z\n1.5,-2,3.25\n4,5,-6.5\n")
    for name, score in (("points.csv", None), ("matches.csv", [0.9, 0.25]), ("plain.csv", None)):
        values, scores = read_points_csv(tmp_path / name)
        np.testing.assert_allclose(values, pts)
        assert (scores is None) if score is None else np.allclose(scores, score)


def test_mapped_landmarks_of_a_run_read_back_through_the_public_reader(phantom_run):
    from medfeat.api import read_landmarks

    path = phantom_run / CASE / "fixed_landmarks_in_moving_world_lps_mm.csv"
    points = read_landmarks(path)  # no space= needed: the file states it
    assert points.meta["source_space"] == "lps" and len(points) > 0
    np.testing.assert_allclose(points.points, read_points_csv(path)[0])


def test_before_after_views_are_sampled_once_per_case(phantom_run, monkeypatch):
    calls = []
    real = reg_page._sample_before_after

    def counted(data):
        calls.append(1)
        return real(data)

    monkeypatch.setattr(reg_page, "_sample_before_after", counted)
    page = build_report(phantom_run).parent / f"{CASE}.html"
    html = page.read_text(encoding="utf-8")
    assert "checkerboard.png" in html and "difference.png" in html
    assert len(calls) == 1


def test_both_alignment_sections_say_why_without_a_fixed_image(tmp_path):
    data = reg_page.RegistrationInputs(tmp_path, None)
    out = Output(tmp_path / "report", "case")
    for section in (
        reg_page.checkerboard_section(out, data),
        reg_page.difference_section(out, data),
    ):
        assert [n.text for n in section.notes] == [
            "The fixed image is not available, so alignment cannot be shown."
        ]


def test_correspondence_report_places_matches_at_their_query_rows(tmp_path):
    """Unmatched queries are comment lines in the matches table: the report puts the matched rows
    back at their query index (NaN elsewhere) and never picks an unmatched query to show."""
    import numpy as np

    from medfeat.report.common import read_points_csv
    from medfeat.report.correspondence import chosen_queries, rows_per_query

    path = tmp_path / "matches.csv"
    path.write_text(
        "# medfeat points: world mm, space=LPS\n"
        "label,x,y,z,score,query\n"
        "a,1,2,3,0.9,0\n"
        "# unmatched: b,nan,nan,nan,nan,1\n"
        "c,4,5,6,0.5,2\n"
    )
    predicted, scores = read_points_csv(path)
    full, full_scores = rows_per_query(path, predicted, scores, np.zeros((3, 3)))
    assert np.array_equal(full[[0, 2]], [[1, 2, 3], [4, 5, 6]]) and np.isnan(full[1]).all()
    assert np.isnan(full_scores[1]) and full_scores[2] == 0.5
    errors = np.array([0.5, np.nan, 2.0])
    assert {i for i, _ in chosen_queries(errors, full_scores, 3)} == {0, 2}


def test_describe_affine_names_translation_rotation_and_scales():
    t = np.deg2rad(10.0)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    a = np.eye(4)
    a[:3, :3] = rot @ np.diag([1.1, 1.0, 0.9])
    a[:3, 3] = (1.0, -2.0, 3.0)
    words = reg_page.describe_affine(a, np.zeros(3))
    assert words["translation (mm, LPS x y z)"] == "1.00 -2.00 3.00"
    assert words["rotation (degrees, about axis x y z)"] == "10.00 about 0.00 0.00 1.00"
    assert words["scale factors (principal stretches)"] == "0.9000 1.0000 1.1000"
    assert words["volume change (det)"] == "0.9900"
    assert words["displacement of the fixed image's centre (mm)"] == f"{np.sqrt(14):.2f}"


def test_a_case_with_a_prealignment_shows_it(phantom_run):
    from medfeat.io.transform_files import write_affine

    a = np.eye(4)
    a[:3, 3] = (2.0, 0.0, -1.0)
    write_affine(a, phantom_run / CASE / reg_page.PREALIGNMENT_FILE)
    data = reg_page.RegistrationInputs(phantom_run / CASE, None)
    np.testing.assert_allclose(data.prealignment, a)
    html = (build_report(phantom_run).parent / f"{CASE}.html").read_text(encoding="utf-8")
    assert 'id="pre-alignment"' in html and "2.00 0.00 -1.00" in html


def test_a_case_without_one_has_no_prealignment_section(phantom_run):
    html = (build_report(phantom_run).parent / f"{CASE}.html").read_text(encoding="utf-8")
    assert 'id="pre-alignment"' not in html
