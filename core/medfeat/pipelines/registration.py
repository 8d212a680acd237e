"""Registration pipeline: fixed/moving -> fields, warped image/labels, transformed points, metrics.

Each case goes through three steps: :func:`register` (checks, features, optimisation),
:func:`write_outputs` (fields, warped image and labels, mapped landmarks) and :func:`case_metrics`
(TRE, field regularity, Dice and HD95 per label).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from medfeat.components import RegistrationCase, RegistrationResult
from medfeat.geometry import Image
from medfeat.pipelines.cases import (
    apply_mask_policy,
    case_features,
    case_record,
    check_case,
    label_metrics,
    point_metrics,
)
from medfeat.pipelines.runner import Run
from medfeat.resources import PeakMemory, check_fits


@dataclass
class Components:
    """The components a registration pipeline builds once and applies to every case."""

    backbone: Any
    transforms: list[Any]
    similarity: Any
    regulariser: Any
    optimiser: Any

    @classmethod
    def build(cls, run: Run) -> Components:
        parts = cls(
            backbone=run.build("backbone"),
            transforms=run.build_all("feature_transforms"),
            similarity=run.build("similarity"),
            regulariser=run.build("regulariser"),
            optimiser=run.build("optimiser"),
        )
        run.require_method(
            parts.optimiser,
            "register",
            "optimiser",
            "for registration (it may be a matcher: use a correspondence pipeline)",
        )
        return parts


@dataclass
class Registered:
    """A registered case: the optimiser's result and what it cost."""

    case: RegistrationCase
    result: RegistrationResult
    seconds: float
    peak_rss_mb: float

    @cached_property
    def predicted_points(self) -> np.ndarray | None:
        """The fixed landmarks mapped into the moving image (world LPS mm), if there are any."""
        if self.case.fixed_points is None:
            return None
        return self.result.forward.transform_points(self.case.fixed_points.points)

    @cached_property
    def warped_labels(self) -> Image | None:
        """The moving labels warped onto the fixed grid (nearest neighbour), if there are any."""
        from medfeat.io.resample import warp_image

        if self.case.fixed_labels is None or self.case.moving_labels is None:
            return None
        return warp_image(self.case.moving_labels, self.result.forward, "nearest")


def register(run: Run, parts: Components, case: RegistrationCase) -> Registered:
    """Check the case, set its mask, compute features and optimise the field (timed, memory peak)."""
    ctx = run.context
    start = time.perf_counter()
    check_case(case)
    apply_mask_policy(run, case)
    with PeakMemory() as memory:
        feats = case_features(run, parts.backbone, parts.transforms, case)
        check_fits(parts.optimiser, f"Registration of {case.id}", ctx.device, feats[0], feats[1])
        with ctx.timed("optimisation"):
            result = parts.optimiser.register(
                case.fixed,
                case.moving,
                feats[0],
                feats[1],
                similarity=parts.similarity,
                regulariser=parts.regulariser,
                fixed_mask=case.fixed_mask,
            )
    return Registered(case, result, time.perf_counter() - start, memory.peak_mb)


def write_outputs(run: Run, reg: Registered) -> None:
    """Write the fields, the warped image and labels, and the mapped landmarks of a case."""
    from medfeat.io.fields import write_displacement_field
    from medfeat.io.images import write_image
    from medfeat.io.landmarks import write_landmarks
    from medfeat.io.resample import warp_image

    out_cfg = run.resolved.pipeline.output
    out = run.case_dir(reg.case.id)
    fields = {"field_fixed_to_moving.nii.gz": reg.result.forward}
    if reg.result.inverse is not None and out_cfg.write_inverse:
        fields["field_moving_to_fixed.nii.gz"] = reg.result.inverse
    with run.context.timed("writing outputs"):
        for name, field in fields.items():
            write_displacement_field(
                field, out / name, convention=out_cfg.field_convention, protect=run.protected
            )
        if out_cfg.write_warped:
            warped = warp_image(reg.case.moving, reg.result.forward, "linear")
            write_image(warped, out / "warped_moving.nii.gz", protect=run.protected)
            if reg.warped_labels is not None:
                write_image(
                    reg.warped_labels, out / "warped_moving_labels.nii.gz", protect=run.protected
                )
        if reg.predicted_points is not None:
            write_landmarks(
                reg.predicted_points,
                out / "fixed_landmarks_in_moving_world_lps_mm.csv",
                protect=run.protected,
            )


def case_metrics(reg: Registered) -> dict[str, Any]:
    """Time, memory, TRE (mm), SDlogJ, folding (%), Dice and HD95 (mm) per label, optimiser info."""
    from medfeat.metrics.jacobian import folding_pct, sdlogj

    fwd = reg.result.forward
    metrics: dict[str, Any] = {
        "seconds": round(reg.seconds, 3),
        "peak_rss_mb": round(reg.peak_rss_mb, 1),
        **point_metrics(reg.case, reg.predicted_points),
        "sdlogj": float(sdlogj(fwd)),
        "folding_pct": float(folding_pct(fwd)),
        **label_metrics(reg.case, reg.warped_labels),
    }
    info = reg.result.info.items()
    return metrics | {f"info_{k}": v for k, v in info if isinstance(v, int | float | str)}


def run(run: Run) -> dict[str, Any]:
    from medfeat.io.atomic import atomic_write_json

    dataset = run.build("data")
    parts = Components.build(run)
    summary: dict[str, Any] = {"cases": {}}
    for case in dataset.registration_cases():
        run.protect(case.inputs)
        reg = register(run, parts, case)
        write_outputs(run, reg)
        metrics = case_metrics(reg)
        atomic_write_json(run.case_dir(case.id) / "metrics.json", metrics)
        summary["cases"][case.id] = metrics
        fwd = reg.result.forward
        run.case_records[case.id] = {
            **case_record(case),
            "field_direction": fwd.mapping,
            "field_units": "mm, world LPS vectors",
            "meta": case.meta,
        }
        _report(run, case.id, metrics)
    return summary


def _report(run: Run, case_id: str, metrics: dict[str, Any]) -> None:
    msg = f"[bold]{case_id}[/bold]: {metrics['seconds']:.1f} s"
    if "tre_mm_after" in metrics:
        msg += f", TRE {metrics['tre_mm_before']['mean']:.2f} -> {metrics['tre_mm_after']['mean']:.2f} mm"
    msg += f", SDlogJ {metrics['sdlogj']:.3f}, folding {metrics['folding_pct']:.3f} %"
    run.context.progress.log(msg)
