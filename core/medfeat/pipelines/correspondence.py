"""Correspondence pipeline: query points in A (fixed) -> matched points in B (moving)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from medfeat.errors import LandmarkError
from medfeat.pipelines.registration import case_features, check_case, point_metrics
from medfeat.pipelines.runner import Run
from medfeat.resources import PeakMemory, check_fits


def run(run: Run) -> dict[str, Any]:
    from medfeat.io.atomic import atomic_write_json, atomic_write_text
    from medfeat.provenance import describe_image, describe_input

    ctx = run.context
    dataset = run.build("data")
    backbone = run.build("backbone")
    transforms = run.build_all("feature_transforms")
    matcher = run.build("matcher")
    run.require_method(
        matcher,
        "match",
        "matcher",
        "for correspondence (it may be a deformable optimiser: use a registration pipeline)",
    )

    summary: dict[str, Any] = {"cases": {}}
    for case in dataset.registration_cases():
        start = time.perf_counter()
        check_case(case)
        if case.fixed_points is None:
            raise LandmarkError(
                f"Case {case.id!r} has no query points.",
                remedy="Give `data.fixed_landmarks` (the points of A to match into B).",
            )
        run.protect(case.inputs)
        with PeakMemory() as memory:
            feats = case_features(run, backbone, transforms, case)
            check_fits(
                matcher,
                f"Matching of {case.id}",
                ctx.device,
                feats[0],
                feats[1],
                len(case.fixed_points),
            )
            with ctx.timed("matching"):
                matches = matcher.match(feats[0], feats[1], case.fixed_points)
        seconds = time.perf_counter() - start
        out = run.case_dir(case.id)
        pts = np.asarray(matches.points.points)
        scores = np.asarray(matches.scores, dtype=float).reshape(-1)
        lines = ["x_mm_lps,y_mm_lps,z_mm_lps,score"] + [
            f"{p[0]:.4f},{p[1]:.4f},{p[2]:.4f},{s:.6f}" for p, s in zip(pts, scores, strict=True)
        ]
        atomic_write_text(out / "matches_in_moving_world_lps_mm.csv", "\n".join(lines) + "\n")
        metrics: dict[str, Any] = {
            "seconds": round(seconds, 3),
            "peak_rss_mb": round(memory.peak_mb, 1),
            "num_queries": len(pts),
            "mean_score": float(scores.mean()) if len(scores) else None,
        }
        metrics.update(point_metrics(case, pts))
        atomic_write_json(out / "metrics.json", metrics)
        summary["cases"][case.id] = metrics
        run.case_records[case.id] = {
            "inputs": [describe_input(p) for p in case.inputs],
            "fixed": describe_image(case.fixed),
            "moving": describe_image(case.moving),
            "points_space": "world LPS mm",
        }
        if "tre_mm_after" in metrics:
            ctx.progress.log(
                f"[bold]{case.id}[/bold]: matched {len(pts)} points, error {metrics['tre_mm_before']['mean']:.2f} -> {metrics['tre_mm_after']['mean']:.2f} mm"
            )
    return summary
