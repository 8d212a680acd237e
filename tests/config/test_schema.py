"""Pipeline and component schemas: every option is described, path options say their role."""

from typing import get_args

import pytest
from pydantic import BaseModel

from medfeat.config.schema import PIPELINE_KINDS, ComponentRef, OutputOptions, PathRole
from medfeat.plugins import get_registry


def undescribed(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Options of ``model`` (and of the models nested in it) that have no description."""
    missing = []
    for name, info in model.model_fields.items():
        if not (info.description or "").strip():
            missing.append(prefix + name)
        for sub in _models_in(info.annotation):
            missing += undescribed(sub, f"{prefix}{name}.")
    return missing


def _models_in(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [] if annotation is ComponentRef else [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def test_the_checker_finds_an_undescribed_nested_option():
    from pydantic import Field

    class Inner(BaseModel):
        steps: int = 3

    class Outer(BaseModel):
        inner: Inner | None = Field(None, description="An inner model.")

    assert undescribed(Outer) == ["inner.steps"]


COMPONENTS = sorted(
    (kind, name) for kind, comps in get_registry().components.items() for name in comps
)


@pytest.mark.parametrize("kind, name", COMPONENTS, ids=lambda v: v)
def test_every_option_of_every_registered_component_is_described(kind, name):
    component = get_registry().get(kind, name)
    missing = undescribed(component.config)
    assert not missing, f"{kind} {name!r} ({component.plugin}): no description for {missing}"


@pytest.mark.parametrize("kind", PIPELINE_KINDS)
def test_every_pipeline_option_is_described(kind):
    assert undescribed(PIPELINE_KINDS[kind]) == []


def test_the_output_folder_is_marked_as_an_output():
    assert PathRole("output") in OutputOptions.model_fields["dir"].metadata
