"""Segmentation pipeline: train a head on a dataset's samples, or infer label maps with it."""

from __future__ import annotations

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


def run(run: Run) -> dict[str, Any]:
    from medfeat.io.atomic import atomic_write_json
    from medfeat.io.images import write_image

    pipeline = run.resolved.pipeline
    dataset = run.build("data")
    backbone = run.build("backbone")
    head = run.build("head")
    if pipeline.mode == "train":
        run.require_method(head, "fit", "head", "for training")
        train, validation = _samples(run, dataset, "train"), _samples(run, dataset, "validation")
        for s in [*train, *validation]:
            run.protect(s.inputs)
        with run.context.timed("training"):
            return {
                "mode": "train",
                **head.fit(train, validation, run.out_dir, run.context, backbone=backbone),
            }

    if pipeline.checkpoint is None:
        raise ConfigError(
            "inference needs `checkpoint:` (the head's weights).",
            source=run.resolved.source.name,
            key_path="checkpoint",
        )
    head.load(pipeline.checkpoint)
    summary: dict[str, Any] = {"mode": "infer", "cases": {}}
    for sample in run.context.progress.track(_samples(run, dataset, "test"), "Segmenting"):
        run.protect(sample.inputs)
        with run.context.timed("inference"):
            pred = head.predict(sample.image, backbone=backbone)
        write_image(pred, run.case_dir(sample.id) / "labels.nii.gz", protect=run.protected)
        metrics: dict[str, Any] = {}
        if sample.labels is not None:
            # only the labels the head segments (a partial label set is not an error of the head)
            metrics = dice_metrics(sample.labels, pred, getattr(head, "label_ids", None))
        atomic_write_json(run.case_dir(sample.id) / "metrics.json", metrics)
        summary["cases"][sample.id] = metrics
    means = [m["mean_dice"] for m in summary["cases"].values() if "mean_dice" in m]
    if means:
        summary["mean_dice"] = (
            float(np.nanmean(means)) if np.isfinite(means).any() else float("nan")
        )
    return summary
