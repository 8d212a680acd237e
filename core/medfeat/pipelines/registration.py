"""Registration pipeline: fixed/moving -> fields, warped image/labels, transformed points, metrics.

Each case goes through three steps: :func:`register` (checks, masks, pre-alignment, the working
grid, features, optimisation), :func:`write_outputs` (the whole fields and their chain, warped
image and labels, mapped landmarks) and :func:`case_metrics` (TRE, field regularity, Dice and
HD95 per label).

The deformable optimiser sees both images on one isotropic working grid in the fixed image's
frame (:mod:`medfeat.geometry.working`), the moving image through the pre-alignment; the written
fields are the whole mapping between the original images (:mod:`medfeat.geometry.chain`).
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np

from medfeat.components import RegistrationCase, RegistrationResult
from medfeat.geometry import Grid, Image
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

#: The files of a case's transform chain (see :func:`write_outputs`).
WHOLE = {
    "fixed_to_moving": "field_fixed_to_moving.nii.gz",
    "moving_to_fixed": "field_moving_to_fixed.nii.gz",
}
DEFORMABLE = {
    "fixed_to_moving": "deformable_fixed_to_moving.nii.gz",
    "moving_to_fixed": "deformable_moving_to_fixed.nii.gz",
}
PREALIGNMENT = {
    "fixed_to_moving": "prealignment_fixed_to_moving.tfm",
    "moving_to_fixed": "prealignment_moving_to_fixed.tfm",
}


@dataclass
class Components:
    """The components a registration pipeline builds once and applies to every case."""

    backbone: Any
    transforms: list[Any]
    similarity: Any
    regulariser: Any
    optimiser: Any
    aligners: list[Any]

    @classmethod
    def build(cls, run: Run) -> Components:
        parts = cls(
            backbone=run.build("backbone"),
            transforms=run.build_all("feature_transforms"),
            similarity=run.build("similarity"),
            regulariser=run.build("regulariser"),
            optimiser=run.build("optimiser"),
            aligners=run.build_all("prealignment"),
        )
        run.require_method(
            parts.optimiser,
            "register",
            "optimiser",
            "for registration (it may be a matcher: use a correspondence pipeline)",
        )
        for aligner in parts.aligners:
            if not callable(getattr(aligner, "align", None)):
                from medfeat.errors import ConfigError

                raise ConfigError(
                    f"prealignment component {type(aligner).__name__} has no `align` method.",
                    remedy="List aligners under `prealignment` (`medfeat components aligner`).",
                )
        return parts


@dataclass
class Working:
    """Where the deformable optimiser ran: the working grid, the pre-alignment (fixed -> moving
    world matrix) and the case resampled onto that grid."""

    grid: Grid
    prealignment: np.ndarray
    case: RegistrationCase

    @property
    def spacing_mm(self) -> float:
        return float(self.grid.spacing[0])

    def describe(self) -> dict[str, Any]:
        return {
            "working_grid": self.grid.to_dict(),
            "working_spacing_mm": self.spacing_mm,
            "prealignment_fixed_to_moving": np.round(self.prealignment, 9).tolist(),
        }


@dataclass
class Registered:
    """A registered case: the deformable result on the working grid, the whole mapping between
    the original images (float32 values, as written), and what it cost."""

    case: RegistrationCase
    working: Working
    deformable: RegistrationResult
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

    @cached_property
    def jacobian_mm(self) -> np.ndarray:
        """det J of the whole fixed -> moving field on the fixed grid (float32), computed once
        for every metric that needs it."""
        from medfeat.metrics.jacobian import jacobian_determinant_mm

        return jacobian_determinant_mm(self.result.forward)


def prealign(run: Run, parts: Components, case: RegistrationCase) -> np.ndarray:
    """The pre-alignments in order, each from the previous result (identity first)."""
    from medfeat.geometry.working import check_affine

    affine = np.eye(4)
    comps = run.resolved.components.get("prealignment") or []
    for comp, aligner in zip(comps, parts.aligners, strict=True):
        with run.context.timed("prealignment"):
            affine = aligner.align(
                case.fixed,
                case.moving,
                initial=affine.copy(),
                fixed_mask=case.fixed_mask,
                moving_mask=case.moving_mask,
            )
        affine = check_affine(affine, f"prealignment {comp.name!r}")
    return affine


def to_working(run: Run, case: RegistrationCase, affine: np.ndarray) -> Working:
    """The case on the working grid: fixed image and mask resampled, moving ones through
    ``affine``; landmarks and labels stay with the original images."""
    from medfeat.geometry.working import resample_image, working_grid

    grid = working_grid(case.fixed.grid, run.resolved.pipeline.working_spacing_mm)

    def on_grid(image: Image | None, moving: bool, nearest: bool = False) -> Image | None:
        if image is None:
            return None
        return resample_image(image, grid, affine=affine if moving else None, nearest=nearest)

    with run.context.timed("working grid"):
        work = replace(
            case,
            fixed=on_grid(case.fixed, False),
            moving=on_grid(case.moving, True),
            fixed_mask=on_grid(case.fixed_mask, False, nearest=True),
            moving_mask=on_grid(case.moving_mask, True, nearest=True),
            fixed_points=None,
            moving_points=None,
            fixed_labels=None,
            moving_labels=None,
        )
    return Working(grid, affine, work)


def _accepts(method: Any, name: str) -> bool:
    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def whole_result(
    deformable: RegistrationResult, case: RegistrationCase, affine: np.ndarray
) -> RegistrationResult:
    """The deformable result composed with the pre-alignment, on the original images' grids,
    rounded to float32 (the values written)."""
    from medfeat.geometry.chain import as_float32, whole_forward, whole_inverse

    forward = as_float32(whole_forward(deformable.forward, affine, case.fixed.grid))
    inverse = None
    if deformable.inverse is not None:
        inverse = as_float32(whole_inverse(deformable.inverse, affine, case.moving.grid))
    return RegistrationResult(forward, inverse, dict(deformable.info))


def register(run: Run, parts: Components, case: RegistrationCase) -> Registered:
    """Check the case, set its masks, pre-align, resample onto the working grid, compute
    features and optimise the field (timed, memory peak)."""
    ctx = run.context
    start = time.perf_counter()
    check_case(case, require_overlap=not run.resolved.components.get("prealignment"))
    apply_mask_policy(run, case)
    with PeakMemory() as memory:
        affine = prealign(run, parts, case)
        working = to_working(run, case, affine)
        work = working.case
        feats = case_features(run, parts.backbone, parts.transforms, work)
        check_fits(parts.optimiser, f"Registration of {case.id}", ctx.device, feats[0], feats[1])
        extra = {}
        if work.moving_mask is not None and _accepts(parts.optimiser.register, "moving_mask"):
            extra["moving_mask"] = work.moving_mask
        with ctx.timed("optimisation"):
            deformable = parts.optimiser.register(
                work.fixed,
                work.moving,
                feats[0],
                feats[1],
                similarity=parts.similarity,
                regulariser=parts.regulariser,
                fixed_mask=work.fixed_mask,
                **extra,
            )
        with ctx.timed("composing fields"):
            result = whole_result(deformable, case, affine)
    seconds = time.perf_counter() - start
    return Registered(case, working, deformable, result, seconds, memory.peak_mb)


def write_outputs(run: Run, reg: Registered) -> None:
    """Write the whole fields (pre-alignment included) with their chain, the warped image and
    labels, and the mapped landmarks of a case.

    ``transform_chain.json`` names, per direction, the ``whole`` field and its ``parts`` in the
    order they apply to a point (fixed -> moving: the deformable field, then the pre-alignment;
    moving -> fixed: the inverse pre-alignment, then the inverse deformable field). Without a
    pre-alignment the whole field is the only part.
    """
    from medfeat.geometry.chain import as_float32, field_on_grid
    from medfeat.geometry.field import DisplacementField
    from medfeat.geometry.working import is_identity
    from medfeat.io.atomic import atomic_write_json
    from medfeat.io.fields import write_affine_transform, write_displacement_field
    from medfeat.io.images import write_image
    from medfeat.io.landmarks import write_landmarks
    from medfeat.io.resample import warp_image

    out_cfg = run.resolved.pipeline.output
    out = run.case_dir(reg.case.id)
    affine = reg.working.prealignment
    chained = not is_identity(affine)
    inverse_written = reg.result.inverse is not None and out_cfg.write_inverse
    directions = ["fixed_to_moving"] + (["moving_to_fixed"] if inverse_written else [])
    sidecar = {
        "includes_prealignment": chained,
        "prealignment_fixed_to_moving": np.round(affine, 9).tolist(),
        "working_spacing_mm": reg.working.spacing_mm,
    }
    whole = {"fixed_to_moving": reg.result.forward, "moving_to_fixed": reg.result.inverse}
    chain: dict[str, Any] = {}
    with run.context.timed("writing outputs"):
        for d in directions:
            write_displacement_field(
                whole[d],
                out / WHOLE[d],
                convention=out_cfg.field_convention,
                protect=run.protected,
                extra=sidecar | {"part": "whole"},
            )
            chain[d] = {"whole": WHOLE[d], "parts": [WHOLE[d]]}
        if chained:
            for d in directions:
                inv = d == "moving_to_fixed"
                matrix = np.linalg.inv(affine) if inv else affine
                write_affine_transform(matrix, out / PREALIGNMENT[d], protect=run.protected)
                part = reg.deformable.inverse if inv else reg.deformable.forward
                # the deformable part lives in the fixed frame (the pre-aligned moving image)
                field = as_float32(
                    DisplacementField(
                        field_on_grid(part, reg.case.fixed.grid), reg.case.fixed.grid, d
                    )
                )
                write_displacement_field(
                    field,
                    out / DEFORMABLE[d],
                    convention="itk",
                    protect=run.protected,
                    extra=sidecar | {"includes_prealignment": False, "part": "deformable"},
                )
                pieces = [DEFORMABLE[d], PREALIGNMENT[d]]
                chain[d]["parts"] = pieces[::-1] if inv else pieces
        atomic_write_json(
            out / "transform_chain.json",
            chain
            | {
                "convention": "ITK: each part maps a point of the previous space to the next "
                "(fixed_to_moving starts at a fixed point); fields are displacements in world LPS "
                "mm, .tfm files ITK affine transforms (LPS mm).",
                "field_convention": out_cfg.field_convention,
            },
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

    det = reg.jacobian_mm
    metrics: dict[str, Any] = {
        "seconds": round(reg.seconds, 3),
        "peak_rss_mb": round(reg.peak_rss_mb, 1),
        **point_metrics(reg.case, reg.predicted_points, reg.working.prealignment),
        "sdlogj": float(sdlogj(det)),
        "folding_pct": float(folding_pct(det)),
        **label_metrics(reg.case, reg.warped_labels, reg.working.prealignment),
    }
    metrics["working_spacing_mm"] = reg.working.spacing_mm
    metrics["prealignment_fixed_to_moving"] = np.round(reg.working.prealignment, 6).tolist()
    info = reg.result.info.items()
    return metrics | {f"info_{k}": v for k, v in info if isinstance(v, int | float | str)}


def process_case(run: Run, parts: Components, case: RegistrationCase) -> tuple[dict, dict]:
    """Register one case and write its outputs; returns its metrics and provenance record (the
    per-case entry point of a cohort)."""
    reg = register(run, parts, case)
    write_outputs(run, reg)
    metrics = case_metrics(reg)
    record = {
        **case_record(case),
        **reg.working.describe(),
        "field_direction": reg.result.forward.mapping,
        "field_units": "mm, world LPS vectors",
        "fields_include_prealignment": True,
        "meta": case.meta,
    }
    _report(run, case.id, metrics)
    return metrics, record


def run(run: Run) -> dict[str, Any]:
    from medfeat.io.atomic import atomic_write_json

    dataset = run.build("data")
    parts = Components.build(run)
    summary: dict[str, Any] = {"cases": {}}
    for case in dataset.registration_cases():
        run.protect(case.inputs)
        metrics, record = process_case(run, parts, case)
        atomic_write_json(run.case_dir(case.id) / "metrics.json", metrics)
        summary["cases"][case.id] = metrics
        run.case_records[case.id] = record
    return summary


def _report(run: Run, case_id: str, metrics: dict[str, Any]) -> None:
    msg = f"[bold]{case_id}[/bold]: {metrics['seconds']:.1f} s"
    if "tre_mm_after" in metrics:
        msg += f", TRE {metrics['tre_mm_before']['mean']:.2f} -> {metrics['tre_mm_after']['mean']:.2f} mm"
    msg += f", SDlogJ {metrics['sdlogj']:.3f}, folding {metrics['folding_pct']:.3f} %"
    run.context.progress.log(msg)
