"""Correspondence pipeline: query points in A (fixed) -> matched points in B (moving).

Each case goes through :func:`match` (checks, features, matching), :func:`write_matches` and
:func:`case_metrics` (number of queries, mean score, TRE when the true points are known).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from medfeat.components import RegistrationCase
from medfeat.errors import LandmarkError
from medfeat.pipelines.cases import case_features, case_record, check_case, point_metrics
from medfeat.pipelines.runner import Run
from medfeat.resources import PeakMemory, check_fits


@dataclass
class Matched:
    """A matched case: points in B (world LPS mm), their scores, and what matching cost."""

    points: np.ndarray
    scores: np.ndarray
    seconds: float
    peak_rss_mb: float


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
    return Matched(
        np.asarray(matches.points.points),
        np.asarray(matches.scores, dtype=float).reshape(-1),
        time.perf_counter() - start,
        memory.peak_mb,
    )


def write_matches(run: Run, case_id: str, matched: Matched) -> None:
    """``matches_in_moving_world_lps_mm.csv``: one row per query point, with its score."""
    from medfeat.io.atomic import atomic_write_text

    rows = zip(matched.points, matched.scores, strict=True)
    lines = ["x_mm_lps,y_mm_lps,z_mm_lps,score"]
    lines += [f"{p[0]:.4f},{p[1]:.4f},{p[2]:.4f},{s:.6f}" for p, s in rows]
    atomic_write_text(
        run.case_dir(case_id) / "matches_in_moving_world_lps_mm.csv", "\n".join(lines) + "\n"
    )


def case_metrics(case: RegistrationCase, matched: Matched) -> dict[str, Any]:
    """Time, memory, number of queries, mean score and (when B's points are known) TRE in mm."""
    scores = matched.scores
    return {
        "seconds": round(matched.seconds, 3),
        "peak_rss_mb": round(matched.peak_rss_mb, 1),
        "num_queries": len(matched.points),
        "mean_score": float(scores.mean()) if len(scores) else None,
        **point_metrics(case, matched.points),
    }


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
    write_matches(run, case.id, matched)
    metrics = case_metrics(case, matched)
    return metrics, {**case_record(case), "points_space": "world LPS mm"}
