"""What a cohort does with one case, per pipeline kind: build the components once (per worker),
load a case by id, and process a case into its folder (returning its metrics and record)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medfeat.pipelines.runner import Run


@dataclass(frozen=True)
class Kind:
    """``check(run)``: refusals before anything is built; ``build(run)``: the components;
    ``process(run, parts, case)``: ``(metrics, record)``, the outputs written to
    ``run.case_dir(case.id)``."""

    check: Callable[[Run], None]
    build: Callable[[Run], Any]
    process: Callable[[Run, Any, Any], tuple[dict[str, Any], dict[str, Any]]]


def _nothing(run: Run) -> None:
    return None


def _registration_parts(run: Run) -> Any:
    from medfeat.pipelines import registration

    return registration.Components.build(run)


def _registration_case(run: Run, parts: Any, case: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    from medfeat.pipelines import registration

    return registration.process_case(run, parts, case)


def _correspondence() -> Kind:
    from medfeat.pipelines import correspondence

    return Kind(_nothing, correspondence.build_parts, correspondence.process_case)


def _segmentation() -> Kind:
    from medfeat.pipelines import segmentation

    return Kind(segmentation.check_inference, segmentation.build_inference, segmentation.infer_case)


def kind_of(pipeline_kind: str) -> Kind:
    """The per-case steps of a case-by-case pipeline kind."""
    if pipeline_kind == "registration":
        return Kind(_nothing, _registration_parts, _registration_case)
    if pipeline_kind == "correspondence":
        return _correspondence()
    if pipeline_kind == "segmentation":
        return _segmentation()
    raise ValueError(f"{pipeline_kind} pipelines do not run case by case")
