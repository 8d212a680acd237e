"""The rules every component's options follow (config/base.py): booleans are not numbers,
non-finite numbers only where a field allows them, absurd magnitudes refused, plain pydantic
models held to the same rules."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medfeat.config.base import FLOAT_LIMIT, INT_LIMIT, ConfigModel, validate_options
from medfeat.config.resolve import resolve_pipeline
from medfeat.config.source import parse_yaml
from medfeat.errors import ConfigError
from medfeat.plugins import get_registry
from medfeat.registry import KINDS


class Options(ConfigModel):
    steps: int = Field(10, ge=1)
    lr: float = 0.1
    schedule: list[float] = Field(default_factory=list)
    size: tuple[int, int, int] | int = 1
    weights: dict[str, float] = Field(default_factory=dict)
    flag: bool = False
    either: int | bool = 0
    threshold: float | None = None
    big: float = Field(0.0, le=1e30)
    unbounded: float = Field(0.0, allow_inf_nan=True)


def refusal(**options) -> str:
    with pytest.raises(ValidationError) as err:
        Options.model_validate(options)
    return str(err.value)


@pytest.mark.parametrize(
    "options, where",
    [
        ({"steps": True}, "it is a boolean"),
        ({"lr": False}, "it is a boolean"),
        ({"threshold": True}, "it is a boolean"),
        ({"schedule": [0.1, True]}, "item 1 is a boolean"),
        ({"size": [1, 2, False]}, "item 2 is a boolean"),
        ({"size": True}, "it is a boolean"),
        ({"weights": {"a": 1.0, "b": True}}, "key 'b' is a boolean"),
    ],
)
def test_a_boolean_is_not_a_number(options, where):
    message = refusal(**options)
    assert "expected a number" in message and where in message


def test_booleans_stay_booleans_where_the_option_takes_one():
    parsed = Options.model_validate({"flag": True, "either": True, "steps": 3, "lr": 1})
    assert parsed.flag is True and parsed.either is True
    assert (parsed.steps, parsed.lr) == (3, 1.0)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_numbers_are_refused_unless_the_field_allows_them(value):
    assert "finite number" in refusal(lr=value)
    assert "finite number" in refusal(schedule=[1.0, value])
    parsed = Options.model_validate({"unbounded": value})
    assert parsed.unbounded == value or value != value  # nan != nan


def test_absurd_magnitudes_are_refused_with_a_clear_message():
    assert "beyond any sensible value" in refusal(lr=1e308)
    assert "beyond any sensible value" in refusal(lr=-FLOAT_LIMIT * 10)
    assert "beyond any sensible value" in refusal(schedule=[1.0, 1e200])
    assert "beyond any sensible value" in refusal(steps=INT_LIMIT + 1)
    # YAML reads 1e308 (no dot) as text; pydantic converts it; the bound still holds
    assert "beyond any sensible value" in refusal(lr="1e308")
    # an explicit bound on that side is the field's own decision
    assert Options.model_validate({"big": 1e29}).big == 1e29
    assert "beyond any sensible value" in refusal(big=-1e29)
    # ordinary values pass
    assert Options.model_validate({"lr": FLOAT_LIMIT, "steps": 10**9}).lr == FLOAT_LIMIT


class PlainOptions(BaseModel):
    """A plugin's model that does not derive from ConfigModel."""

    model_config = ConfigDict(extra="forbid")
    steps: int = 1
    gain: float = 1.0


def test_a_plain_pydantic_model_is_held_to_the_same_rules():
    with pytest.raises(ValidationError, match="boolean"):
        validate_options(PlainOptions, {"steps": True})
    with pytest.raises(ValidationError, match="finite"):
        validate_options(PlainOptions, {"gain": float("inf")})
    with pytest.raises(ValidationError, match="beyond any sensible value"):
        validate_options(PlainOptions, {"gain": 1e300})
    parsed = validate_options(PlainOptions, {"steps": 3})
    assert type(parsed) is PlainOptions and parsed.steps == 3


def numeric_fields():
    """(kind, component, option) of every int/float option of every installed component."""
    registry = get_registry()
    for kind in KINDS:
        for name, comp in registry.components[kind].items():
            for option, info in comp.config.model_fields.items():
                if info.annotation in (int, float) and not info.is_required():
                    yield kind, name, option


def test_every_installed_component_refuses_true_for_a_number_option():
    registry = get_registry()
    checked = 0
    for kind, name, option in numeric_fields():
        config = registry.get(kind, name).config
        with pytest.raises(ValidationError, match="boolean"):
            validate_options(config, {option: True})
        checked += 1
    assert checked > 20  # the built-ins alone have dozens


GOOD = "kind: registration\ndata: {name: breathing-phantom}\noptimiser:\n  name: convex-adam\n"


@pytest.mark.parametrize(
    "line, expected",
    [
        ("  adam_iterations: true\n", "expected a number, but it is a boolean"),
        ("  smoothness_weight: .inf\n", "finite number"),
        ("  smoothness_weight: .nan\n", "finite number"),
        ("  adam_iterations: 100000000000000000000000\n", "beyond any sensible value|less than"),
    ],
)
def test_bad_values_in_a_pipeline_name_file_line_and_key(line, expected):
    with pytest.raises(ConfigError) as err:
        resolve_pipeline(parse_yaml(GOOD + line, "p.yaml"), get_registry())
    message = str(err.value)
    assert message.startswith("p.yaml, line 5 at 'optimiser.") and re.search(expected, message)
