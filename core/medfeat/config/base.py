"""The base model of every component's options: strict about names, types and magnitudes.

Every :class:`ConfigModel` (each component's options and the pipeline schema) gets these rules:

* an unknown option is refused (the resolver adds "did you mean");
* ``true``/``false`` is not a number: a boolean given to an ``int`` or ``float`` option (or to an
  item of a list of numbers) is refused instead of read as 1 or 0;
* ``.inf`` and ``.nan`` are refused unless the field opts in with ``Field(allow_inf_nan=True)``;
* a number beyond :data:`FLOAT_LIMIT` (floats) or :data:`INT_LIMIT` (integers) in magnitude is
  refused, so that an absurd value (``lr: 1e308``) is a clear message instead of an overflow deep
  in a computation. A field that declares its own bound on that side (``le=``/``lt=`` above,
  ``ge=``/``gt=`` below) or allows non-finite values is held to its own bounds only.
"""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Mapping, Sequence, Set
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Interval, Le, Lt
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

#: Largest magnitude of a float option without an explicit bound of its own.
FLOAT_LIMIT = 1e12
#: Largest magnitude of an integer option without an explicit bound of its own (2^53: every such
#: integer is exact as a float64, and far from int64 overflow).
INT_LIMIT = 2**53


def _strip(annotation: Any) -> Any:
    """``Annotated[X, ...]`` -> ``X``."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _members(annotation: Any) -> list[Any]:
    """The members of a union (``X | None``, ``Union[...]``), each without ``Annotated``."""
    annotation = _strip(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return [annotation]


def _takes_bool_as_number(annotation: Any) -> bool:
    """Whether a boolean value for ``annotation`` would be silently read as a number."""
    numeric = accepts_bool = False
    for member in _members(annotation):
        if member is bool or member is Any or member is object:
            accepts_bool = True
        elif get_origin(member) is Literal:
            values = get_args(member)
            accepts_bool |= any(isinstance(v, bool) for v in values)
            numeric |= any(isinstance(v, int | float) for v in values)
        elif isinstance(member, type) and issubclass(member, int | float):
            numeric = True
    return numeric and not accepts_bool


def _item_types(annotation: Any, value: Any) -> list[Any] | None:
    """For a list/tuple/set ``value``: one candidate type list per container member of the
    annotation (each the type of every item); ``None`` when no member is a container."""
    candidates = []
    for member in _members(annotation):
        origin, args = get_origin(member), get_args(member)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) == len(value):
                candidates.append(list(args))
        elif isinstance(origin, type) and issubclass(origin, Sequence | Set) and args:
            candidates.append([args[0]] * len(value))
    return candidates or None


def _misplaced_bool(value: Any, annotation: Any) -> str | None:
    """Where (``""`` for the value itself, ``"item 2"``, ``"key 'a'"``) a boolean stands for a
    number in ``value``, or ``None``."""
    if isinstance(value, bool):
        return "" if _takes_bool_as_number(annotation) else None
    if isinstance(value, list | tuple):
        candidates = _item_types(annotation, value)
        if not candidates:
            return None
        for i, item in enumerate(value):
            found = [_misplaced_bool(item, types_[i]) for types_ in candidates]
            if all(f is not None for f in found):
                return f"item {i}" + (f" {found[0]}" if found[0] else "")
        return None
    if isinstance(value, Mapping):
        value_types = [
            get_args(m)[1]
            for m in _members(annotation)
            if isinstance(get_origin(m), type)
            and issubclass(get_origin(m), Mapping)
            and len(get_args(m)) == 2
        ]
        for key, item in value.items():
            found = [_misplaced_bool(item, t) for t in value_types]
            if found and all(f is not None for f in found):
                return f"key {key!r}" + (f" {found[0]}" if found[0] else "")
    return None


def _bounds(metadata: list[Any]) -> tuple[bool, bool, bool]:
    """``(has a lower bound, has an upper bound, allows inf/nan)`` of a field's constraints."""
    lower = upper = non_finite = False
    for m in metadata:
        if isinstance(m, Ge | Gt):
            lower = True
        elif isinstance(m, Le | Lt):
            upper = True
        elif isinstance(m, Interval):
            lower |= m.ge is not None or m.gt is not None
            upper |= m.le is not None or m.lt is not None
        if getattr(m, "allow_inf_nan", None):
            non_finite = True
    return lower, upper, non_finite


def _out_of_range(value: Any, lower: bool, upper: bool) -> Any:
    """The first number in ``value`` (at any depth of lists, tuples and dicts) beyond the generic
    limits on a side without an explicit bound, or ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        limit = INT_LIMIT if isinstance(value, int) else FLOAT_LIMIT
        if isinstance(value, float) and not math.isfinite(value):
            return None  # allowed by the field, or already refused by pydantic
        if (value > limit and not upper) or (value < -limit and not lower):
            return value
        return None
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        for item in value.values() if isinstance(value, Mapping) else value:
            found = _out_of_range(item, False, False)
            if found is not None:
                return found
    return None


class ConfigModel(BaseModel):
    """Base of component config models: unknown options are refused (with "did you mean"),
    booleans are not numbers, non-finite and absurdly large numbers are refused (see the module)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is None or not isinstance(value, bool | list | tuple | dict):
            return value
        where = _misplaced_bool(value, field.annotation)
        if where is not None:
            what = f"{where} is" if where else "it is"
            raise ValueError(
                f"expected a number, but {what} a boolean (true/false); write the number itself"
            )
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _bounded_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is None or isinstance(value, str | BaseModel) or value is None:
            return value
        lower, upper, non_finite = _bounds(field.metadata)
        if non_finite:
            return value
        found = _out_of_range(value, lower, upper)
        if found is not None:
            limit = "1e12" if isinstance(found, float) else "2^53"
            raise ValueError(
                f"{found!r} is beyond any sensible value for this option (medfeat accepts "
                f"magnitudes up to {limit}); check the value and its unit"
            )
        return value


class NoOptions(ConfigModel):
    """Config model of components that take no options."""


@functools.cache
def _checked(model: type[BaseModel]) -> type[BaseModel]:
    """``model`` with the :class:`ConfigModel` rules added (its own settings win)."""
    return type(model.__name__, (ConfigModel, model), {"__module__": model.__module__})


def validate_options(model: type[BaseModel], data: Any) -> BaseModel:
    """``model.model_validate(data)``, held to the :class:`ConfigModel` rules also when ``model``
    is a plain pydantic model (the result is still an instance of ``model`` itself)."""
    if not issubclass(model, ConfigModel):
        _checked(model).model_validate(data)
    return model.model_validate(data)
