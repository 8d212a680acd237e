"""Correspondence pipeline: query points in A (fixed) -> matched points in B (moving).

Each case goes through :func:`match` (checks, features, matching), :func:`write_matches` and
:func:`case_metrics` (number of queries, mean score, TRE when the true points are known).

Unmatched queries (outside A, or whose search box misses B) do not fail a case: they are listed
as unmatched in the table, counted in the metrics, left out of the TRE, and the run warns once
per case.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from medfeat.components import Matches, RegistrationCase
from medfeat.errors import LandmarkError
from medfeat.io.point_files import MARK
from medfeat.pipelines.cases import case_features, case_record, check_case, point_metrics
from medfeat.pipelines.runner import Run
from medfeat.resources import PeakMemory, check_fits

#: The per-case output: one row per query, in the ``# medfeat points:`` table format.
MATCHES_FILE = "matches_in_moving_world_lps_mm.csv"
#: The first line of that table (the format of :func:`medfeat.io.point_files.write_points`).
_POINTS_MARK = f"{MARK} world mm, space=LPS"
_SEPARATORS = re.compile(r"[,;\s#]+")


@dataclass
class Matched:
    """A matched case: one position in B (world LPS mm) and one score per query (NaN for an
    unmatched query), which queries are matched, their labels, and what matching cost."""

    points: np.ndarray
    scores: np.ndarray
    seconds: float
    peak_rss_mb: float
    matched: np.ndarray | None = None
    labels: list[str] | None = None

    def __post_init__(self) -> None:
        if self.matched is None:
            self.matched = np.all(np.isfinite(self.points), axis=1)

    @property
    def num_unmatched(self) -> int:
        return int((~self.matched).sum())


def match(
    run: Run, backbone: Any, transforms: list[Any], matcher: Any, case: RegistrationCase
) -> Matched:
    """Check the case, compute features and match the query points (timed, memory peak)."""
    ctx = run.context
    start = time.perf_counter()
    check_case(case)
    if case.fixed_points is None:
        raise LandmarkError(
            f"Case {case.id!r} has no query points.",
            remedy="Give `data.fixed_landmarks` (the points of A to match into B).",
        )
    with PeakMemory() as memory:
        feats = case_features(run, backbone, transforms, case)
        n = len(case.fixed_points)
        check_fits(matcher, f"Matching of {case.id}", ctx.device, feats[0], feats[1], n)
        with ctx.timed("matching"):
            matches = matcher.match(feats[0], feats[1], case.fixed_points)
    return matched_of(matches, case, time.perf_counter() - start, memory.peak_mb)


def matched_of(matches: Matches, case: RegistrationCase, seconds: float, peak_mb: float) -> Matched:
    """A matcher's :class:`Matches` as one row per query of ``case``."""
    if matches.matched is None:
        points = np.asarray(matches.points.points, dtype=np.float64)
        scores = np.asarray(matches.scores, dtype=np.float64).reshape(-1)
    else:
        points, scores = matches.positions_mm(), matches.query_scores()
    if len(points) != len(case.fixed_points) or len(scores) != len(points):
        raise LandmarkError(
            f"Case {case.id!r}: the matcher returned {len(points)} points and {len(scores)} "
            f"scores for {len(case.fixed_points)} queries.",
            remedy="The matcher must return one match per query (marking the queries it could "
            "not match with Matches.from_positions and NaN positions); report this to the "
            "matcher's authors.",
        )
    matched = np.all(np.isfinite(points), axis=1)
    scores = np.where(matched, scores, np.nan)
    return Matched(points, scores, seconds, peak_mb, matched, case.fixed_points.labels)


def warn_unmatched(run: Run, case_id: str, matched: Matched) -> None:
    """Warn once for a case with unmatched queries: how many, and what to do."""
    n = matched.num_unmatched
    if not n:
        return
    run.context.progress.warn(
        f"Case {case_id}: {n} of {len(matched.points)} query points have no match (they lie "
        "outside image A, or their search box holds no voxel of B); they are listed as "
        f"unmatched in {MATCHES_FILE} and left out of the TRE. Remedy: raise the matcher's "
        "box_half_size_mm, or check the pre-alignment and that A and B cover the same anatomy."
    )


def _label(matched: Matched, i: int) -> str:
    if matched.labels is None:
        return str(i + 1)
    return _SEPARATORS.sub("_", str(matched.labels[i]).strip()) or str(i + 1)


def format_matches(matched: Matched) -> str:
    """The table: ``label,x,y,z,score,query`` (``query``: 0-based row of the query file), with
    unmatched queries as ``#`` lines (``nan`` values), so that
    :func:`medfeat.io.landmarks.read_landmarks` reads the matched points back without being told
    the space."""
    n, bad = len(matched.points), matched.num_unmatched
    lines = [
        _POINTS_MARK,
        f"# matches in B of the {n} query points of A; score: the matcher's similarity; "
        f"{bad} unmatched (no candidate: outside A or search box outside B)"
        + (", written as '#' lines" if bad else ""),
        "label,x,y,z,score,query",
    ]
    for i, (p, s, ok) in enumerate(
        zip(matched.points, matched.scores, matched.matched, strict=True)
    ):
        row = f"{_label(matched, i)},{p[0]:.4f},{p[1]:.4f},{p[2]:.4f},{s:.6f},{i}"
        lines.append(row if ok else f"# unmatched: {_label(matched, i)},nan,nan,nan,nan,{i}")
    return "\n".join(lines) + "\n"


def write_matches(run: Run, case_id: str, matched: Matched) -> None:
    """``matches_in_moving_world_lps_mm.csv``: one row per query (see :func:`format_matches`)."""
    from medfeat.io.atomic import atomic_write_text

    atomic_write_text(run.case_dir(case_id) / MATCHES_FILE, format_matches(matched))


def case_metrics(case: RegistrationCase, matched: Matched) -> dict[str, Any]:
    """Time, memory, number of queries (matched, unmatched), mean score of the matched ones and
    (when B's points are known) TRE in mm: before over every query, after over the matched ones
    (its ``n`` says how many)."""
    from medfeat.metrics.tre import tre

    ok = matched.matched
    scores = matched.scores[ok]
    out: dict[str, Any] = {
        "seconds": round(matched.seconds, 3),
        "peak_rss_mb": round(matched.peak_rss_mb, 1),
        "num_queries": len(matched.points),
        "num_matched": int(ok.sum()),
        "num_unmatched": matched.num_unmatched,
        "mean_score": float(scores.mean()) if len(scores) else None,
        **point_metrics(case, None),
    }
    if case.moving_points is not None and ok.any():
        out["tre_mm_after"] = tre(matched.points[ok], case.moving_points.points[ok])
    return out


@dataclass
class Parts:
    """The components a correspondence pipeline builds once (per worker) for every case."""

    backbone: Any
    transforms: list[Any]
    matcher: Any


def build_parts(run: Run) -> Parts:
    """Build the backbone, feature transforms and matcher, and check the matcher can match."""
    parts = Parts(run.build("backbone"), run.build_all("feature_transforms"), run.build("matcher"))
    run.require_method(
        parts.matcher,
        "match",
        "matcher",
        "for correspondence (it may be a deformable optimiser: use a registration pipeline)",
    )
    return parts


def process_case(
    run: Run, parts: Parts, case: RegistrationCase
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Match one case and write its matches into ``run.case_dir(case.id)``; returns its metrics
    and its provenance record."""
    matched = match(run, parts.backbone, parts.transforms, parts.matcher, case)
    warn_unmatched(run, case.id, matched)
    write_matches(run, case.id, matched)
    metrics = case_metrics(case, matched)
    return metrics, {**case_record(case), "points_space": "world LPS mm"}
