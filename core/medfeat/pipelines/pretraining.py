"""Pretraining pipeline: learn backbone weights from a dataset's unlabelled images."""

from __future__ import annotations

from typing import Any

from medfeat.errors import ConfigError
from medfeat.pipelines.runner import Run


def run(run: Run) -> dict[str, Any]:
    dataset = run.build("data")
    pretrainer = run.build("pretrainer")
    if not callable(getattr(dataset, "images", None)):
        raise ConfigError(
            f"dataset {run.resolved.pipeline.data.name!r} provides no images for pretraining.",
            source=run.resolved.source.name,
            line=run.resolved.source.line_of(("data", "name")),
            key_path="data.name",
        )
    with run.context.timed("pretraining"):
        return {"mode": "pretrain", **pretrainer.fit(dataset, run.out_dir, run.context)}
