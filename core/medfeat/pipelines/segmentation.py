"""Segmentation pipeline: train a head on a dataset's samples, or infer label maps with it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medfeat.errors import ConfigError
from medfeat.pipelines.cases import dice_metrics
from medfeat.pipelines.runner import Run


def _samples(run: Run, dataset: Any, split: str) -> list[Any]:
    if not callable(getattr(dataset, "segmentation_samples", None)):
        raise ConfigError(
            f"dataset {run.resolved.pipeline.data.name!r} provides no segmentation samples.",
            source=run.resolved.source.name,
            line=run.resolved.source.line_of(("data", "name")),
            key_path="data.name",
            remedy="Use a dataset adapter for images with label maps (`medfeat components dataset`).",
        )
    return list(dataset.segmentation_samples(split))


@dataclass
class InferenceParts:
    """What segmentation inference builds once (per worker): the backbone and the loaded head."""

    backbone: Any
    head: Any


def check_inference(run: Run) -> None:
    """Refuse inference without a checkpoint before anything is built."""
    if run.resolved.pipeline.checkpoint is None:
        raise ConfigError(
            "inference needs `checkpoint:` (the head's weights).",
            source=run.resolved.source.name,
            key_path="checkpoint",
            remedy="Set `checkpoint:` to the weights file a training run wrote.",
        )


def build_inference(run: Run) -> InferenceParts:
    """Build the backbone and the head, and load the head's weights."""
    check_inference(run)
    backbone = run.build("backbone")
    head = run.build("head")
    run.require_method(head, "predict", "head", "for inference")
    head.load(run.resolved.pipeline.checkpoint)
    return InferenceParts(backbone, head)


def infer_case(
    run: Run, parts: InferenceParts, sample: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Predict one sample's label map into ``run.case_dir(sample.id)``; Dice when labels are known
    (only on the labels the head segments: a partial label set is not an error of the head)."""
    from medfeat.io.images import write_image
    from medfeat.provenance import describe_image, describe_input

    with run.context.timed("inference"):
        pred = parts.head.predict(sample.image, backbone=parts.backbone)
    write_image(pred, run.case_dir(sample.id) / "labels.nii.gz", protect=run.protected)
    metrics: dict[str, Any] = {}
    if sample.labels is not None:
        metrics = dice_metrics(sample.labels, pred, getattr(parts.head, "label_ids", None))
    record = {
        "inputs": [describe_input(p) for p in sample.inputs],
        "image": describe_image(sample.image),
    }
    return metrics, record


def mean_dice(cases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``{"mean_dice": ...}`` over the cases that have one (empty when none has)."""
    means = [m["mean_dice"] for m in cases.values() if "mean_dice" in m]
    if not means:
        return {}
    return {"mean_dice": float(np.nanmean(means)) if np.isfinite(means).any() else float("nan")}


def run(run: Run) -> dict[str, Any]:
    """Training (inference runs case by case as a cohort: :mod:`medfeat.cohort`)."""
    dataset = run.build("data")
    backbone = run.build("backbone")
    head = run.build("head")
    run.require_method(head, "fit", "head", "for training")
    train, validation = _samples(run, dataset, "train"), _samples(run, dataset, "validation")
    for s in [*train, *validation]:
        run.protect(s.inputs)
    with run.context.timed("training"):
        return {
            "mode": "train",
            **head.fit(train, validation, run.out_dir, run.context, backbone=backbone),
        }
