"""Load YAML while remembering the line of every key, so errors can point at it.

Standard merge keys are supported: ``<<: *base`` (or ``<<: [*a, *b]``) copies the keys of the
anchored mappings that the mapping itself does not set; a key written twice in one mapping is an
error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medfeat.errors import ConfigError, InputFileError

KeyPath = tuple[str | int, ...]


def format_key_path(path: KeyPath) -> str:
    """``("optimiser", "levels", 0)`` -> ``optimiser.levels[0]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass
class YamlSource:
    """Parsed YAML data plus ``key path -> line`` (1-based; 0 = a command-line override) for error
    messages, and the ``folder`` that relative paths in the file are relative to (``None``: text
    that came from no file; its relative paths stay relative to the working directory)."""

    data: Any
    name: str
    lines: dict[KeyPath, int] = field(default_factory=dict)
    folder: Path | None = None

    def line_of(self, path: KeyPath) -> int | None:
        """Line of ``path`` or of its closest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def error(self, message: str, path: KeyPath, remedy: str | None = None) -> ConfigError:
        return ConfigError(
            message,
            source=self.name,
            line=self.line_of(path),
            key_path=format_key_path(path) or None,
            remedy=remedy,
        )


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _construct(
    node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], loader: yaml.SafeLoader
) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        return _construct_mapping(node, path, lines, loader)
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*path, i), lines, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _construct_mapping(
    node: yaml.MappingNode, path: KeyPath, lines: dict[KeyPath, int], loader: yaml.SafeLoader
) -> dict[Any, Any]:
    """A mapping: its own keys (each once), then the keys of its ``<<`` merges it does not set
    (earlier merges win), each with the line where its value is written."""
    out: dict[Any, Any] = {}
    merges: list[yaml.MappingNode] = []
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE_TAG:
            merges.extend(_merge_sources(value_node, path))
            continue
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise ConfigError(
                f"duplicate key {key!r}.",
                line=key_node.start_mark.line + 1,
                key_path=format_key_path((*path, key)),
            )
        out[key] = _construct(value_node, (*path, key), lines, loader)
        lines[(*path, key)] = key_node.start_mark.line + 1
    for merged in merges:
        merged_lines: dict[KeyPath, int] = {}
        values = _construct_mapping(merged, path, merged_lines, loader)
        for key, value in values.items():
            if key in out:
                continue
            out[key] = value
            prefix = (*path, key)
            lines.update((p, n) for p, n in merged_lines.items() if p[: len(prefix)] == prefix)
    return out


def _merge_sources(node: yaml.Node, path: KeyPath) -> list[yaml.MappingNode]:
    """The mappings a ``<<`` value names: one mapping or a list of them."""
    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    if not all(isinstance(item, yaml.MappingNode) for item in items):
        raise ConfigError(
            "a merge key `<<` takes a mapping or a list of mappings, e.g. `<<: *base`.",
            line=node.start_mark.line + 1,
            key_path=format_key_path(path) or None,
        )
    return items


def parse_yaml(text: str, name: str = "<string>") -> YamlSource:
    """Parse YAML text; syntax errors become :class:`ConfigError` with the line."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[KeyPath, int] = {}
        data = _construct(node, (), lines, loader) if node is not None else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"this is not valid YAML: {problem}.", source=name, line=mark.line + 1 if mark else None
        ) from None
    except ConfigError as exc:
        raise ConfigError(
            exc.message.split(": ", 1)[-1], source=name, line=exc.line, key_path=exc.key_path
        ) from None
    finally:
        loader.dispose()
    return YamlSource(data, name, lines)


def load_yaml(path: str | Path) -> YamlSource:
    """Read and parse a YAML file."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(
            f"Pipeline file {path} does not exist."
            if not path.exists()
            else f"{path} is not a file.",
            remedy="Check the path; the examples/ folder has pipelines to start from.",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(
            f"Cannot read pipeline file {path}: {exc}.", remedy="It must be a UTF-8 YAML text file."
        ) from None
    source = parse_yaml(text, str(path))
    source.folder = Path(os.path.abspath(path)).parent
    return source
