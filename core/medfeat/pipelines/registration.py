"""Registration pipeline: fixed/moving -> fields, warped image/labels, transformed points, metrics."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from medfeat.components import FeatureMap, RegistrationCase
from medfeat.geometry import Image
from medfeat.pipelines.runner import Run
from medfeat.resources import PeakMemory, check_fits

MAX_CACHED_FEATURE_MAPS = 4


def extract_features(run: Run, backbone: Any, image: Image) -> FeatureMap:
    """Backbone features of ``image``, reused when the same file comes back in a cohort.

    Keyed by the backbone config and the file's SHA-256; images without a checksum (generated in
    memory) are not cached. At most :data:`MAX_CACHED_FEATURE_MAPS` maps are kept (oldest dropped).
    """
    checksum = image.meta.get("sha256")
    key = ("features", repr(run.resolved.components["backbone"]), checksum)
    cache = run.context.cache
    if checksum is not None and key in cache:
        cache[key] = cache.pop(key)  # most recently used last
        return cache[key]
    with run.context.timed("features"):
        features = backbone.extract(image)
    if checksum is not None:
        cache[key] = features
        cached = [k for k in cache if isinstance(k, tuple) and k[:1] == ("features",)]
        for old in cached[:-MAX_CACHED_FEATURE_MAPS]:
            del cache[old]
    return features


def case_features(
    run: Run, backbone: Any, transforms: list[Any], case: RegistrationCase
) -> list[FeatureMap]:
    """Fixed and moving features after the pipeline's feature transforms (applied jointly)."""
    check_fits(backbone, f"Feature extraction for {case.id}", run.context.device, case.fixed)
    feats = [
        extract_features(run, backbone, case.fixed),
        extract_features(run, backbone, case.moving),
    ]
    for t in transforms:
        with run.context.timed("feature transforms"):
            feats = t.apply(feats, [case.fixed_mask, None])
    return feats


def check_case(case: RegistrationCase) -> None:
    """Refuse unusable inputs before spending time on them."""
    from medfeat.io.images import check_geometry_relatable

    case.fixed.check_finite()
    case.moving.check_finite()
    check_geometry_relatable(case.fixed, case.moving)
    if case.fixed_points is not None and case.moving_points is not None:
        case.fixed_points.check_paired_with(case.moving_points)


def apply_mask_policy(run: Run, case: RegistrationCase) -> None:
    """Set ``case.fixed_mask`` as the pipeline's ``fixed_mask`` option says (and save an automatic one)."""
    policy = run.resolved.pipeline.fixed_mask
    if policy == "none":
        case.fixed_mask = None
    elif policy.startswith("auto-"):
        from medfeat.io.images import write_image
        from medfeat.masks import auto_mask

        with run.context.timed("masking"):
            case.fixed_mask = auto_mask(
                case.fixed, policy.removeprefix("auto-"), run.resolved.pipeline.fixed_mask_threshold
            )
        write_image(
            case.fixed_mask, run.case_dir(case.id) / "fixed_mask_auto.nii.gz", protect=run.protected
        )


def point_metrics(case: RegistrationCase, predicted: np.ndarray | None) -> dict[str, Any]:
    from medfeat.metrics.tre import tre

    if case.fixed_points is None or case.moving_points is None:
        return {}
    out = {"tre_mm_before": tre(case.fixed_points.points, case.moving_points.points)}
    if predicted is not None:
        out["tre_mm_after"] = tre(predicted, case.moving_points.points)
    return out


def run(run: Run) -> dict[str, Any]:
    from medfeat.io.fields import write_displacement_field
    from medfeat.io.images import write_image
    from medfeat.io.landmarks import write_landmarks
    from medfeat.io.resample import resample_to_grid, warp_image
    from medfeat.metrics.jacobian import folding_pct, sdlogj
    from medfeat.metrics.overlap import dice_per_label
    from medfeat.provenance import describe_image, describe_input

    ctx = run.context
    out_cfg = run.resolved.pipeline.output
    dataset = run.build("data")
    backbone = run.build("backbone")
    transforms = run.build_all("feature_transforms")
    similarity = run.build("similarity")
    regulariser = run.build("regulariser")
    optimiser = run.build("optimiser")
    run.require_method(
        optimiser,
        "register",
        "optimiser",
        "for registration (it may be a matcher: use a correspondence pipeline)",
    )

    summary: dict[str, Any] = {"cases": {}}
    for case in dataset.registration_cases():
        start = time.perf_counter()
        check_case(case)
        run.protect(case.inputs)
        apply_mask_policy(run, case)
        with PeakMemory() as memory:
            feats = case_features(run, backbone, transforms, case)
            check_fits(optimiser, f"Registration of {case.id}", ctx.device, feats[0], feats[1])
            with ctx.timed("optimisation"):
                result = optimiser.register(
                    case.fixed,
                    case.moving,
                    feats[0],
                    feats[1],
                    similarity=similarity,
                    regulariser=regulariser,
                    fixed_mask=case.fixed_mask,
                )
        seconds = time.perf_counter() - start

        out = run.case_dir(case.id)
        fwd = result.forward
        with ctx.timed("writing outputs"):
            write_displacement_field(
                fwd,
                out / "field_fixed_to_moving.nii.gz",
                convention=out_cfg.field_convention,
                protect=run.protected,
            )
            if result.inverse is not None and out_cfg.write_inverse:
                write_displacement_field(
                    result.inverse,
                    out / "field_moving_to_fixed.nii.gz",
                    convention=out_cfg.field_convention,
                    protect=run.protected,
                )
            if out_cfg.write_warped:
                write_image(
                    warp_image(case.moving, fwd, "linear"),
                    out / "warped_moving.nii.gz",
                    protect=run.protected,
                )
        metrics: dict[str, Any] = {
            "seconds": round(seconds, 3),
            "peak_rss_mb": round(memory.peak_mb, 1),
        }
        predicted = None
        if case.fixed_points is not None:
            predicted = fwd.transform_points(case.fixed_points.points)
            write_landmarks(
                predicted, out / "fixed_landmarks_in_moving_world_lps_mm.csv", protect=run.protected
            )
        metrics.update(point_metrics(case, predicted))
        det_kwargs = {}
        metrics["sdlogj"] = float(sdlogj(fwd, **det_kwargs))
        metrics["folding_pct"] = float(folding_pct(fwd))
        if case.fixed_labels is not None and case.moving_labels is not None:
            warped_labels = warp_image(case.moving_labels, fwd, "nearest")
            if out_cfg.write_warped:
                write_image(
                    warped_labels, out / "warped_moving_labels.nii.gz", protect=run.protected
                )
            before = resample_to_grid(case.moving_labels, case.fixed.grid, "nearest")
            metrics["dice_before"] = {
                str(k): v for k, v in dice_per_label(case.fixed_labels, before).items()
            }
            metrics["dice_after"] = {
                str(k): v for k, v in dice_per_label(case.fixed_labels, warped_labels).items()
            }
        metrics.update(
            {f"info_{k}": v for k, v in result.info.items() if isinstance(v, int | float | str)}
        )
        from medfeat.io.atomic import atomic_write_json

        atomic_write_json(out / "metrics.json", metrics)
        summary["cases"][case.id] = metrics
        run.case_records[case.id] = {
            "inputs": [describe_input(p) for p in case.inputs],
            "fixed": describe_image(case.fixed),
            "moving": describe_image(case.moving),
            "field_direction": fwd.direction,
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
