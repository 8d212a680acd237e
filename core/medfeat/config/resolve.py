"""Turn YAML into a validated pipeline: schema check, requirements, component options, overrides,
paths made absolute (relative to the pipeline file) and inputs checked to exist."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from medfeat.config.base import validate_options
from medfeat.config.paths import (
    PathOption,
    check_inputs_exist,
    find_mark,
    make_paths_absolute,
    path_options,
)
from medfeat.config.schema import (
    COMPONENT_FIELDS,
    PIPELINE_KINDS,
    ComponentKind,
    ComponentRef,
    PipelineBase,
)
from medfeat.config.source import (
    KeyPath,
    YamlSource,
    YamlStructureError,
    format_key_path,
    parse_yaml,
)
from medfeat.errors import ConfigError, PluginError
from medfeat.registry import Registry


@dataclass
class ResolvedComponent:
    """A component section after validation: the registry entry plus its typed config."""

    kind: str
    name: str
    config: BaseModel
    plugin: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.config.model_dump(mode="json")}


@dataclass
class ResolvedPipeline:
    """The validated pipeline model, its resolved component sections (by field, lists for lists)
    and its input paths (``{key path: absolute or working-directory-relative path}``)."""

    pipeline: PipelineBase
    components: dict[str, ResolvedComponent | list[ResolvedComponent] | None]
    source: YamlSource
    overrides: list[str] = field(default_factory=list)
    inputs: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved configuration, every default filled in (what `--print-config` shows)."""
        out = self.pipeline.model_dump(mode="json", exclude=set(self.components))
        for key, comp in self.components.items():
            if isinstance(comp, list):
                out[key] = [c.to_dict() for c in comp]
            else:
                out[key] = comp.to_dict() if comp is not None else None
        return out


_INDEX = re.compile(r"[0-9]+")


def _override_error(item: str, problem: str, remedy: str | None = None) -> ConfigError:
    return ConfigError(
        f"{problem}",
        source=f"command line override {item!r}",
        remedy=remedy or "Write overrides as key.path=value, e.g. optimiser.adam_iterations=120.",
    )


def _override_value(item: str, raw: str) -> Any:
    """An override's value, read as YAML (bounded like a pipeline file); text that is not valid
    YAML is taken as it is."""
    if not raw.strip():
        return ""
    try:
        return parse_yaml(raw, "override").data
    except YamlStructureError as exc:
        raise _override_error(item, exc.detail, exc.remedy) from None
    except ConfigError:
        return raw


def _describe(value: Any) -> str:
    shape = "a list" if isinstance(value, list) else f"the value {value!r}"
    return shape if len(shape) < 60 else shape[:57] + "..."


def apply_overrides(source: YamlSource, overrides: list[str]) -> None:
    """Apply ``key.path=value`` overrides in place; values are parsed as YAML scalars/lists.

    Each overridden key path gets line 0 (the command line) and is remembered in
    ``source.overrides``, so that errors in it are blamed on the override."""
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise _override_error(
                str(item), f"override {str(item)!r} is not of the form key.path=value."
            )
        key, raw = item.split("=", 1)
        parts: list[str | int] = []
        for token in key.strip().split("."):
            if not token.strip():
                raise _override_error(item, f"the key {key!r} has an empty part.")
            parts.append(int(token) if _INDEX.fullmatch(token) else token.strip())
        value = _override_value(item, raw)
        node = source.data
        if not isinstance(node, dict):
            raise source.error("a pipeline must be a YAML mapping with at least `kind:`.", ())
        for i, part in enumerate(parts[:-1]):
            here = format_key_path(tuple(parts[: i + 1]))
            if isinstance(node, dict):
                if part not in node:
                    if isinstance(parts[i + 1], int):
                        raise _override_error(
                            item,
                            f"{here} is not in the pipeline, so it has no item {parts[i + 1]}.",
                            f"Set the whole list instead, e.g. {here}=[...].",
                        )
                    source.lines[tuple(parts[: i + 1])] = 0  # created by the override
                node = node.setdefault(part, {})
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            elif isinstance(node, list):
                raise _override_error(
                    item,
                    f"{format_key_path(tuple(parts[:i]))} is a list of {len(node)} item(s); "
                    f"it has no item {part!r}.",
                    "Use an index from 0 to the list's length - 1, or set the whole list.",
                )
            if not isinstance(node, dict | list):
                raise _override_error(
                    item,
                    f"{here} is {_describe(node)}, not a section with options.",
                    f"Set {here}=... itself, or check the key path.",
                )
        last = parts[-1]
        if isinstance(node, list) and not (isinstance(last, int) and last < len(node)):
            raise _override_error(
                item,
                f"{format_key_path(tuple(parts[:-1]))} is a list of {len(node)} item(s); "
                f"it has no item {last!r}.",
                "Use an index from 0 to the list's length - 1, or set the whole list.",
            )
        node[last] = value
        path = tuple(parts)
        for known in [k for k in source.lines if k[: len(path)] == path]:
            del source.lines[known]  # lines of what the override replaced
        for known in [k for k in source.overrides if k[: len(path)] == path]:
            del source.overrides[known]
        source.lines[path] = 0  # 0 = from the command line
        source.overrides[path] = item


def _pydantic_error(
    exc: ValidationError,
    source: YamlSource,
    prefix: KeyPath,
    what: str,
    model: type[BaseModel] | None = None,
) -> ConfigError:
    errors = exc.errors()
    # a misspelt option is both unknown and missing: the unknown name says what to fix
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    path = (*prefix, *loc)
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = f"unknown option {str(path[-1])!r} for {what}"
        options = _option_names(model, loc[:-1]) if model is not None else []
        close = difflib.get_close_matches(str(path[-1]), options, n=1, cutoff=0.6)
        if close:
            msg += f". Did you mean {close[0]!r}?"
        elif options:
            msg += f"; its options are: {', '.join(options)}"
    elif err["type"] == "missing":
        msg = f"{what} needs {str(path[-1])!r}, which is missing"
    else:
        msg = msg.removeprefix("Value error, ")
        if "input" in err and not isinstance(err["input"], dict | list):
            msg += f" (got {_short_repr(err['input'])})"
    more = (
        f" ({len(exc.errors()) - 1} more problem(s) in this section)"
        if len(exc.errors()) > 1
        else ""
    )
    end = "" if msg.endswith("?") else "."
    changed = [o for p, o in source.overrides.items() if p[: len(path)] == path]
    if changed and source.line_of(path) != 0 and source.override_at(path) is None:
        # e.g. a check of the whole section, after an override changed one of its options
        more += f" (after the command line override{'s' if len(changed) > 1 else ''} "
        more += ", ".join(repr(o) for o in changed) + ")"
    return source.error(msg + end + more, path)


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _option_names(model: type[BaseModel], loc: list[str | int]) -> list[str]:
    """The option names of the (nested) model that the error location ``loc`` points into."""
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        sub = _model_in(info.annotation) if info is not None else None
        if sub is None:
            return []
        model = sub
    return [info.alias or name for name, info in model.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The config model in a field's type (also inside ``X | None``, ``list[X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return None if annotation is ComponentRef else annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def check_requirements(requires: list[str], source: YamlSource) -> None:
    """Fail early when a required plugin is missing or too old."""
    from packaging.requirements import InvalidRequirement, Requirement

    for i, spec in enumerate(requires):
        try:
            if not isinstance(spec, str):
                raise InvalidRequirement(spec)
            req = Requirement(spec)
        except InvalidRequirement:
            raise source.error(
                f"{spec!r} is not a valid requirement (expected e.g. 'medfeat-dinov3>=0.1').",
                ("requires", i),
            ) from None
        try:
            installed = version(req.name)
        except PackageNotFoundError:
            raise PluginError(
                f"{source.where(('requires', i))[0]} requires the plugin {req.name!r}, which is "
                "not installed.",
                remedy=f"Install it (e.g. `pip install -e plugins/{req.name.removeprefix('medfeat-')}` from a medfeat checkout) and run again.",
            ) from None
        if req.specifier and not req.specifier.contains(installed, prereleases=True):
            raise PluginError(
                f"{source.where(('requires', i))[0]} requires {spec}, but version {installed} is "
                "installed.",
                remedy=f"Upgrade it: pip install '{spec}'.",
            )


def resolve_pipeline(
    source: YamlSource,
    registry: Registry,
    overrides: list[str] | None = None,
    *,
    check_inputs: bool = True,
) -> ResolvedPipeline:
    """Validate a parsed pipeline against its schema and every component's config model.

    Relative paths written in the file become absolute, relative to ``source.folder``; those given
    in ``overrides`` stay relative to the working directory. With ``check_inputs``, every input
    path (a ``Path`` option not typed ``OutputPath``) must exist.
    """
    overrides = list(overrides or [])
    apply_overrides(source, overrides)
    data = source.data
    if not isinstance(data, dict):
        raise source.error("a pipeline must be a YAML mapping with at least `kind:`.", ())
    for key in [k for k in data if isinstance(k, str) and k.startswith("x-")]:
        del data[key]  # extension fields: a place for YAML anchors, not options
    kind = data.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise source.error(
            f"`kind` must be one name, not {_describe(kind)}; expected one of: "
            f"{', '.join(PIPELINE_KINDS)}.",
            ("kind",),
            remedy="Write e.g. `kind: registration` (or kind=registration on the command line).",
        )
    if kind not in PIPELINE_KINDS:
        close = difflib.get_close_matches(str(kind), PIPELINE_KINDS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise source.error(
            f"unknown pipeline kind {kind!r}.{hint} Expected one of: {', '.join(PIPELINE_KINDS)}."
            if kind
            else f"the pipeline has no `kind:`; expected one of: {', '.join(PIPELINE_KINDS)}.",
            ("kind",) if kind else (),
        )
    requires = data.get("requires") or []
    check_requirements(requires if isinstance(requires, list) else [requires], source)
    resolved = _validate(source, registry, kind, overrides)
    written = make_paths_absolute(_path_options(resolved, registry), source)
    if written:  # validate again: the models now hold the absolute paths
        resolved = _validate(source, registry, kind, overrides)
    options = _path_options(resolved, registry)
    if check_inputs:
        check_inputs_exist(options, source, written)
    resolved.inputs = {format_key_path(o.key_path): o.value for o in options if o.role == "input"}
    return resolved


def _validate(
    source: YamlSource, registry: Registry, kind: str, overrides: list[str]
) -> ResolvedPipeline:
    schema = PIPELINE_KINDS[kind]
    try:
        pipeline = schema.model_validate(source.data)
    except ValidationError as exc:
        raise _pydantic_error(exc, source, (), f"a {kind} pipeline", schema) from None
    components: dict[str, Any] = {}
    for key, comp_kind in COMPONENT_FIELDS.items():
        if key not in type(pipeline).model_fields:
            continue
        value = getattr(pipeline, key)
        if isinstance(value, list):
            components[key] = [
                _resolve_component(v, comp_kind, (key, i), source, registry)
                for i, v in enumerate(value)
            ]
        elif value is None:
            components[key] = None
        else:
            components[key] = _resolve_component(value, comp_kind, (key,), source, registry)
    _check_accepted_sections(components, source, registry)
    return ResolvedPipeline(pipeline, components, source, overrides)


def _path_options(resolved: ResolvedPipeline, registry: Registry) -> list[PathOption]:
    """The path options of the pipeline itself and of every component section."""
    options = [
        o
        for o in path_options(resolved.pipeline, (), registry)
        if o.key_path[0] not in resolved.components
    ]
    for key, comp in resolved.components.items():
        for i, c in enumerate(comp) if isinstance(comp, list) else [(None, comp)]:
            if c is not None:
                prefix = (key,) if i is None else (key, i)
                options.extend(path_options(c.config, prefix, registry))
    return options


#: Pipeline sections that exist only to be consumed by another component (its ``accepts``).
CONSUMED_SECTIONS: dict[str, str] = {"similarity": "optimiser", "regulariser": "optimiser"}


def _check_accepted_sections(
    components: dict[str, Any], source: YamlSource, registry: Registry
) -> None:
    """Refuse a ``similarity``/``regulariser`` section that the pipeline's optimiser would ignore."""
    for section, consumer_key in CONSUMED_SECTIONS.items():
        given, consumer = components.get(section), components.get(consumer_key)
        if given is None or not isinstance(consumer, ResolvedComponent):
            continue
        entry = registry.get(consumer.kind, consumer.name)
        if section in entry.accepts:
            continue
        takers = sorted(
            c.name for c in registry.components[consumer.kind].values() if section in c.accepts
        )
        raise source.error(
            f"{consumer_key} {consumer.name!r} takes no `{section}` section, so {section} "
            f"{given.name!r} would be ignored.",
            (section, "name"),
            remedy=f"Remove `{section}`, or pick an {consumer_key} that takes one: "
            + (", ".join(takers) if takers else "none is installed")
            + ".",
        )


def _resolve_component(
    ref: ComponentRef, kind: str, path: KeyPath, source: YamlSource, registry: Registry
) -> ResolvedComponent:
    where, line = source.where((*path, "name"))
    component = registry.get(
        kind, ref.name, source=where, line=line, key_path=format_key_path((*path, "name"))
    )
    try:
        config = validate_options(component.config, ref.options)
    except ValidationError as exc:
        raise _pydantic_error(
            exc, source, path, f"{kind.replace('_', ' ')} {ref.name!r}", component.config
        ) from None
    _resolve_nested(config, path, source, registry)
    return ResolvedComponent(kind, component.name, config, component.plugin)


def _resolve_nested(
    model: BaseModel, path: KeyPath, source: YamlSource, registry: Registry
) -> None:
    """Resolve and validate the components named inside a component's config (see
    :func:`~medfeat.config.schema.nested_component`), at any depth of nested models."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        mark = find_mark(info.annotation, info.metadata, ComponentKind)
        kind = mark.kind if mark else None
        if kind and isinstance(value, ComponentRef):
            _resolve_component(value, kind, (*path, name), source, registry)
        elif kind and isinstance(value, list | tuple | dict):
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(item, ComponentRef):
                    _resolve_component(item, kind, (*path, name, key), source, registry)
        elif isinstance(value, BaseModel):
            _resolve_nested(value, (*path, name), source, registry)
