"""Queries with no match (outside A, or whose search box misses B): reported, counted, left out
of the TRE, warned about once; and the matches table reads back through medfeat's reader."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medfeat.api import read_landmarks
from medfeat.cli.main import main
from medfeat.components import Matches
from medfeat.geometry import Grid, Image, PointSet
from medfeat.pipelines.correspondence import Matched, case_metrics, format_matches, matched_of

#: A tiny phantom whose moving image B keeps only x <= 6 mm (A spans -46..46 mm), plus two
#: queries: one inside A whose box misses B, one just outside A. ``safe-matcher`` is the engine's
#: matcher returning per-query positions through ``Matches.from_positions``.
PARTIAL_PLUGIN = """
import numpy as np
from pydantic import Field
from medfeat.api import ConfigModel, Grid, Image, Matches, PointSet, RegistrationCase, hookimpl
from medfeat.phantoms import breathing_phantom

EXTRA = np.array([[30.0, 0.0, 0.0], [54.0, 0.0, 0.0]])  # box misses B; outside A (edge 48 mm)

class DataCfg(ConfigModel):
    keep_i: int = Field(14, description="Voxels of B kept along x.")

class Partial:
    def __init__(self, cfg):
        self.cfg = cfg
    def registration_cases(self):
        pair = breathing_phantom((24, 24, 24), 4.0, 6.0, 12, seed=0)
        g = pair.moving.grid
        arr = pair.moving.numpy()[:, :, : self.cfg.keep_i].copy()
        moving = Image(arr, Grid(arr.shape, g.spacing, g.origin, g.direction))
        fixed_pts = np.vstack([pair.fixed_points.points, EXTRA])
        moving_pts = np.vstack([pair.moving_points.points, EXTRA])
        yield RegistrationCase("partial", pair.fixed, moving, PointSet(fixed_pts), PointSet(moving_pts))

class MatcherCfg(ConfigModel):
    box_half_size_mm: float | None = Field(8.0, description="Search box half size (mm).")

class SafeMatcher:
    def __init__(self, cfg):
        self.cfg = cfg
    def match(self, fa, fb, queries):
        from medfeat.api import match_points
        r = match_points(
            [lv.data for lv in fa.levels], [lv.grid.array_index_to_world_matrix() for lv in fa.levels],
            [lv.data for lv in fb.levels], [lv.grid.array_index_to_world_matrix() for lv in fb.levels],
            queries.points, box_half_size_mm=self.cfg.box_half_size_mm,
            extent_a=(fa.source.grid.array_index_to_world_matrix(), fa.source.grid.shape))
        return Matches.from_positions(r.positions_mm.numpy(), r.scores.numpy())

@hookimpl
def medfeat_register_datasets(register):
    register("partial", lambda c, ctx: Partial(c), config=DataCfg)

@hookimpl
def medfeat_register_matchers(register):
    register("safe-matcher", lambda c, ctx: SafeMatcher(c), config=MatcherCfg)
"""

BACKBONE = "backbone: {name: mind-ssc, radius_mm: 4.0}\n"


@pytest.fixture
def partial_plugin(fake_distribution) -> None:
    fake_distribution(
        "medfeat-partial", {"medfeat_partial.py": PARTIAL_PLUGIN}, {"p": "medfeat_partial"}
    )


def _run(tmp_path, matcher: str) -> tuple[dict, str, str]:
    p = tmp_path / "c.yaml"
    p.write_text(f"kind: correspondence\ndata: {{name: partial}}\n{BACKBONE}matcher: {matcher}\n")
    assert main(["run", str(p), "--out", str(tmp_path / "o")]) == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())["cases"]["partial"]
    table = (tmp_path / "o" / "partial" / "matches_in_moving_world_lps_mm.csv").read_text()
    return m, table, (tmp_path / "o" / "medfeat.log").read_text()


def test_unmatched_queries_are_reported_counted_and_warned_once(partial_plugin, tmp_path):
    from medfeat.phantoms import breathing_phantom

    m, table, log = _run(tmp_path, "{name: safe-matcher, box_half_size_mm: 8.0}")
    n_phantom = len(breathing_phantom((24, 24, 24), 4.0, 6.0, 12, seed=0).fixed_points)
    unmatched_lines = [ln for ln in table.splitlines() if ln.startswith("# unmatched:")]
    # the two extra queries are unmatched, and so is every other query; the counts agree
    assert m["num_queries"] == n_phantom + 2
    assert m["num_unmatched"] == len(unmatched_lines) >= 2
    assert m["num_matched"] + m["num_unmatched"] == m["num_queries"]
    assert unmatched_lines[-2].endswith(f",nan,nan,nan,nan,{n_phantom}")
    assert unmatched_lines[-1].endswith(f",nan,nan,nan,nan,{n_phantom + 1}")
    # TRE after is over the matched queries only and says how many; before is over all
    assert m["tre_mm_after"]["n"] == m["num_matched"] > 0
    assert m["tre_mm_before"]["n"] == m["num_queries"]
    assert np.isfinite(m["mean_score"])
    # one warning for the case, with the count and the remedy
    warnings = [ln for ln in log.splitlines() if "WARNING" in ln and "have no match" in ln]
    assert len(warnings) == 1
    assert f"{m['num_unmatched']} of {m['num_queries']} query points" in warnings[0]
    assert "box_half_size_mm" in log
    # the table reads back (matched rows only, labelled by query) without stating its space
    back = read_landmarks(tmp_path / "o" / "partial" / "matches_in_moving_world_lps_mm.csv")
    assert len(back) == m["num_matched"]
    assert np.all(back.points[:, 0] <= 6.0 + 8.0 + 1e-6)  # every match lies in B's box


def test_builtin_feature_matcher_reports_unmatched_queries(partial_plugin, tmp_path):
    m, _, _ = _run(tmp_path, "{name: feature-matcher, box_half_size_mm: 8.0}")
    assert m["num_unmatched"] >= 2


def _matched(points: np.ndarray, scores: np.ndarray, labels=None) -> Matched:
    return Matched(points, scores, 0.0, 0.0, labels=labels)


def test_table_round_trips_through_read_landmarks_without_space(tmp_path):
    pts = np.array([[1.25, -2.5, 3.0], [np.nan] * 3, [4.0, 5.5, -6.75], [7.0, 8.0, 9.0]])
    matched = _matched(pts, np.array([0.9, np.nan, 0.4, -0.2]), ["a", "b", "c d", "e,f"])
    path = tmp_path / "m.csv"
    path.write_text(format_matches(matched))
    lines = path.read_text().splitlines()
    assert lines[0] == "# medfeat points: world mm, space=LPS"
    assert "label,x,y,z,score,query" in lines
    assert "# unmatched: b,nan,nan,nan,nan,1" in lines
    back = read_landmarks(path)  # no space=: the first line states it
    np.testing.assert_allclose(back.points, pts[[0, 2, 3]], atol=1e-4)
    assert back.labels == ["a", "c_d", "e_f"]  # separators in labels cannot shift the columns
    assert back.meta["source_space"] == "lps"


def test_report_reader_reads_a_fully_matched_table(tmp_path):
    from medfeat.report.common import read_points_csv

    pts = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    path = tmp_path / "m.csv"
    path.write_text(format_matches(_matched(pts, np.array([0.9, 0.4]))))
    got, scores = read_points_csv(path)
    np.testing.assert_allclose(got, pts)
    np.testing.assert_allclose(scores, [0.9, 0.4])


def test_score_and_query_columns_are_ignored_by_the_reader(tmp_path):
    """Scores like 1 or -1 must never be read as a coordinate."""
    pts = np.array([[10.0, 20.0, 30.0], [-1.0, -2.0, -3.0]])
    path = tmp_path / "m.csv"
    path.write_text(format_matches(_matched(pts, np.array([1.0, -1.0]))))
    back = read_landmarks(path, image=Grid.from_shape((8, 8, 8), 5.0, origin=(-5.0, 0.0, -5.0)))
    assert back.points.shape == (2, 3)
    np.testing.assert_allclose(back.points, pts, atol=1e-4)
    assert back.labels == ["1", "2"]


def _case(n: int = 4):
    from medfeat.components import RegistrationCase

    grid = Grid.from_shape((6, 6, 6), 2.0)
    img = Image(np.random.default_rng(0).random(grid.shape).astype(np.float32), grid)
    q = np.arange(3 * n, dtype=float).reshape(n, 3)
    return RegistrationCase("c", img, img, PointSet(q), PointSet(q + 1.0))


def test_metrics_count_unmatched_and_tre_uses_matched_only():
    case = _case()
    pred = case.moving_points.points + np.array([[3.0, 4.0, 0.0]])  # 5 mm off everywhere
    pred[1] = np.nan
    matches = Matches.from_positions(pred, np.array([0.5, 0.7, 0.3, 0.1]))
    assert matches.num_unmatched == 1 and len(matches.points) == 3
    m = case_metrics(case, matched_of(matches, case, 1.0, 2.0))
    assert (m["num_queries"], m["num_matched"], m["num_unmatched"]) == (4, 3, 1)
    assert m["tre_mm_after"]["n"] == 3 and m["tre_mm_after"]["mean"] == pytest.approx(5.0)
    assert m["mean_score"] == pytest.approx(0.3)  # the unmatched query's score is not averaged
    assert m["tre_mm_before"]["n"] == 4


def test_no_matched_query_gives_no_tre_after_and_no_mean_score():
    case = _case(2)
    matches = Matches.from_positions(np.full((2, 3), np.nan), np.full(2, np.nan))
    m = case_metrics(case, matched_of(matches, case, 0.0, 0.0))
    assert m["num_unmatched"] == 2 and "tre_mm_after" not in m and m["mean_score"] is None


def test_a_matcher_with_a_row_count_mismatch_is_named():
    from medfeat.errors import LandmarkError

    case = _case(3)
    matches = Matches(PointSet(np.zeros((2, 3))), np.zeros(2))
    with pytest.raises(LandmarkError, match="2 points and 2 scores for 3 queries"):
        matched_of(matches, case, 0.0, 0.0)


def test_matches_keep_per_query_rows():
    pos = np.array([[1.0, 2.0, 3.0], [np.inf, 0.0, 0.0], [4.0, 5.0, 6.0]])
    m = Matches.from_positions(pos, np.array([0.2, -np.inf, 0.8]))
    assert m.num_queries == 3 and m.num_unmatched == 1
    np.testing.assert_array_equal(m.matched, [True, False, True])
    assert np.isnan(m.positions_mm()[1]).all() and np.isnan(m.query_scores()[1])
    np.testing.assert_allclose(m.query_scores()[[0, 2]], [0.2, 0.8])
    full = Matches.from_positions(pos[[0, 2]], np.array([0.2, 0.8]))
    assert full.matched is None and full.num_unmatched == 0
    with pytest.raises(Exception, match="marked matched"):
        Matches(PointSet(np.zeros((2, 3))), np.zeros(2), np.array([True, False, False]))
