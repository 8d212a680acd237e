"""Path options of a validated pipeline: find them, make relative ones absolute, check inputs exist.

A relative path written in a pipeline file is relative to the file's folder; one given as a
command-line override (``key=value``) is relative to the working directory. Every ``Path`` option
is an input (it must exist before the run) unless it is typed :data:`~medfeat.config.schema.OutputPath`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel

from medfeat.config.base import validate_options
from medfeat.config.schema import ComponentKind, ComponentRef, PathRole
from medfeat.config.source import KeyPath, YamlSource, format_key_path
from medfeat.errors import ConfigError

_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class PathOption:
    """One path value in a validated pipeline, where it is, and whether the run reads or writes it."""

    key_path: KeyPath
    value: Path
    role: str  # "input" or "output"


def find_mark(annotation: Any, metadata: list[Any], cls: type) -> Any:
    """The first ``cls`` instance among a field's metadata or anywhere in its type's
    ``Annotated[...]`` arguments (also inside ``X | None``, ``list[X]``)."""
    for mark in metadata:
        if isinstance(mark, cls):
            return mark
    for mark in getattr(annotation, "__metadata__", ()):
        if isinstance(mark, cls):
            return mark
    for arg in get_args(annotation):
        mark = find_mark(arg, [], cls)
        if mark is not None:
            return mark
    return None


def path_options(model: BaseModel, prefix: KeyPath, registry: Any) -> Iterator[PathOption]:
    """Every path value of a validated config model, at any depth: nested models, lists, dicts
    and components named inside it (validated with their own config model through ``registry``)."""
    for name, info in type(model).model_fields.items():
        role = find_mark(info.annotation, info.metadata, PathRole)
        kind = find_mark(info.annotation, info.metadata, ComponentKind)
        yield from _walk(
            getattr(model, name),
            role.role if role else "input",
            kind.kind if kind else None,
            (*prefix, info.alias or name),
            registry,
        )


def _walk(value: Any, role: str, kind: str | None, path: KeyPath, registry: Any):
    if isinstance(value, Path):
        yield PathOption(path, value, role)
    elif isinstance(value, ComponentRef):
        if kind is not None:
            config = validate_options(registry.get(kind, value.name).config, value.options)
            yield from path_options(config, path, registry)
    elif isinstance(value, BaseModel):
        yield from path_options(value, path, registry)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _walk(item, role, kind, (*path, i), registry)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, role, kind, (*path, key), registry)


def make_paths_absolute(options: list[PathOption], source: YamlSource) -> dict[KeyPath, str]:
    """Rewrite, in ``source.data``, each relative path written in the pipeline file as an absolute
    path under ``source.folder`` (``~`` is expanded). Command-line values are left as they are.

    Returns ``{key path: value as written}`` of the rewritten options.
    """
    written: dict[KeyPath, str] = {}
    for option in options:
        if source.line_of(option.key_path) == 0:
            continue  # a command-line override: relative to the working directory
        parent, key = _container(source.data, option.key_path)
        raw = parent[key] if parent is not None else None
        if not isinstance(raw, str) or Path(raw) != option.value:
            continue  # not written as this path (a default, or reshaped by a validator)
        target = Path(raw).expanduser()
        if not target.is_absolute():
            if source.folder is None:
                continue
            target = Path(os.path.normpath(source.folder / target))
        if str(target) != raw:
            parent[key] = str(target)
            written[option.key_path] = raw
    return written


def _container(data: Any, path: KeyPath) -> tuple[Any, Any]:
    """``(container, key)`` holding ``path`` in plain YAML data, or ``(None, None)``."""
    node = data
    for part in path[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None, None
    if not path or not isinstance(node, dict | list):
        return None, None
    try:
        node[path[-1]]
    except (KeyError, IndexError, TypeError):
        return None, None
    return node, path[-1]


def check_inputs_exist(
    options: list[PathOption], source: YamlSource, written: dict[KeyPath, str]
) -> None:
    """Raise a :class:`ConfigError` naming the first input path that does not exist (its line,
    key and how it was resolved) and the key paths of any others. Glob patterns are left to the
    component that expands them."""
    missing = [
        o
        for o in options
        if o.role == "input" and not _GLOB_CHARS & set(str(o.value)) and not o.value.exists()
    ]
    if not missing:
        return
    first = missing[0]
    key = format_key_path(first.key_path)
    line = source.line_of(first.key_path)
    if line == 0:
        override = source.override_at(first.key_path)
        where = f"command line override {override!r}" if override else "command line override"
        how = f" (a relative path on the command line is relative to the working directory, {Path.cwd()})"
    else:
        where = source.name
        raw = written.get(first.key_path)
        how = (
            f" (written {raw!r}: a relative path is relative to the pipeline file's folder, "
            f"{source.folder})"
            if raw is not None and not raw.startswith("~")
            else ""
        )
    others = [format_key_path(o.key_path) for o in missing[1:]]
    also = f" Also missing: {', '.join(others)}." if others else ""
    raise ConfigError(
        f"the input {first.value} does not exist{how}.{also}",
        source=where,
        line=line or None,
        key_path=key,
        remedy=f"Correct `{key}`, create or download what it names, or give it on the command "
        f"line: {key}=/path/to/it.",
    )
