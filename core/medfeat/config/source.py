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
    #: ``key path -> "key.path=value"`` of each command-line override applied to ``data``
    overrides: dict[KeyPath, str] = field(default_factory=dict)

    def override_at(self, path: KeyPath) -> str | None:
        """The override that set ``path`` or one of its ancestors, or (when the override created
        ``path``) the first one below it; ``None`` when ``path`` comes from the file."""
        path = tuple(path)
        for k in range(len(path), 0, -1):
            if path[:k] in self.overrides:
                return self.overrides[path[:k]]
        if path and self.lines.get(path) == 0:
            below = [o for p, o in self.overrides.items() if p[: len(path)] == path]
            return below[0] if below else None
        return None

    def line_of(self, path: KeyPath) -> int | None:
        """Line of ``path`` or of its closest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def error(self, message: str, path: KeyPath, remedy: str | None = None) -> ConfigError:
        """A :class:`ConfigError` at ``path``: its file and line, or the command-line override
        that wrote it."""
        source, line = self.where(path)
        return ConfigError(
            message,
            source=source,
            line=line,
            key_path=format_key_path(path) or None,
            remedy=remedy,
        )

    def where(self, path: KeyPath) -> tuple[str, int | None]:
        """``(source, line)`` for an error at ``path``: the file and line, or the command-line
        override that wrote it (and no line)."""
        line = self.line_of(path)
        override = self.override_at(path)
        if line == 0 or override is not None:
            return (
                f"command line override {override!r}" if override else "command line override"
            ), None
        return self.name, line


_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}

#: How many nodes aliases (``*name``) and merge keys (``<<: *name``) may copy in one document. A
#: real pipeline copies a few hundred; an "alias bomb" (aliases of aliases, each copying the one
#: before many times) would copy billions and exhaust the memory.
MAX_ALIAS_COPIES = 100_000
#: Largest pipeline file read, in bytes.
MAX_FILE_BYTES = 64 * 2**20


class YamlStructureError(ConfigError):
    """YAML that parses but cannot be a pipeline: an alias bomb, a recursive alias, a list or
    mapping as a key, a scalar its tag cannot read, nesting too deep to read."""


class _Builder:
    """Turns a composed YAML node graph into plain data with a line for every key path, copying
    each alias (so that changing one copy leaves the others alone), within :data:`MAX_ALIAS_COPIES`
    and refusing recursive aliases."""

    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.seen: set[int] = set()
        self.copies = 0
        self.building: set[int] = set()  # collections under construction: a cycle check

    def construct(self, node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int]) -> Any:
        self._count(node, path)
        lines[path] = node.start_mark.line + 1
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _PLAIN_TAGS:
            raise YamlStructureError(
                f"the tag {node.tag.replace('tag:yaml.org,2002:', '!!')!r} is not supported.",
                line=node.start_mark.line + 1,
                key_path=format_key_path(path) or None,
                remedy="Remove the tag: a pipeline is plain mappings, lists and values.",
            )
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path, lines)
        if isinstance(node, yaml.SequenceNode):
            with self._building(node, path):
                return [
                    self.construct(item, (*path, i), lines) for i, item in enumerate(node.value)
                ]
        return self.scalar(node, path)

    def scalar(self, node: yaml.Node, path: KeyPath) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, TypeError, OverflowError) as exc:
            raise YamlStructureError(
                f"the value {node.value!r} cannot be read as {node.tag.rsplit(':', 1)[-1]}: {exc}.",
                line=node.start_mark.line + 1,
                key_path=format_key_path(path) or None,
                remedy="Write a plain value, or fix the value to match its tag.",
            ) from None

    def mapping(
        self, node: yaml.MappingNode, path: KeyPath, lines: dict[KeyPath, int]
    ) -> dict[Any, Any]:
        """A mapping: its own keys (each once), then the keys of its ``<<`` merges it does not
        set (earlier merges win), each with the line where its value is written."""
        out: dict[Any, Any] = {}
        merges: list[yaml.MappingNode] = []
        with self._building(node, path):
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    merges.extend(_merge_sources(value_node, path))
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    shape = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
                    raise YamlStructureError(
                        f"a {shape} is used as a mapping key; keys must be plain names.",
                        line=key_node.start_mark.line + 1,
                        key_path=format_key_path(path) or None,
                        remedy="Write the key as a name (`key: value`), not as `? [...]` or "
                        "`{...}: value`.",
                    )
                key = self.scalar(key_node, path)
                if key in out:
                    raise ConfigError(
                        f"duplicate key {key!r}.",
                        line=key_node.start_mark.line + 1,
                        key_path=format_key_path((*path, key)),
                    )
                out[key] = self.construct(value_node, (*path, key), lines)
                lines[(*path, key)] = key_node.start_mark.line + 1
            for merged in merges:
                self._count(merged, path)
                merged_lines: dict[KeyPath, int] = {}
                values = self.mapping(merged, path, merged_lines)
                for key, value in values.items():
                    if key in out:
                        continue
                    out[key] = value
                    prefix = (*path, key)
                    lines.update(
                        (p, n) for p, n in merged_lines.items() if p[: len(prefix)] == prefix
                    )
        return out

    def _count(self, node: yaml.Node, path: KeyPath) -> None:
        if id(node) not in self.seen:
            self.seen.add(id(node))
            return
        self.copies += 1
        if self.copies > MAX_ALIAS_COPIES:
            raise YamlStructureError(
                f"its aliases expand to more than {MAX_ALIAS_COPIES:,} copied values (an alias "
                "of aliases that multiplies, a so-called alias bomb); this is not read.",
                line=node.start_mark.line + 1,
                key_path=format_key_path(path) or None,
                remedy="Write the repeated values out, or use fewer levels of aliases.",
            )

    def _building(self, node: yaml.Node, path: KeyPath):
        builder = self

        class _Guard:
            def __enter__(self) -> None:
                if id(node) in builder.building:
                    raise YamlStructureError(
                        f"a recursive alias: the anchored value at line {node.start_mark.line + 1} "
                        "contains an alias to itself, which would never end.",
                        line=node.start_mark.line + 1,
                        key_path=format_key_path(path) or None,
                        remedy="Refer to an anchor only outside the value it names.",
                    )
                builder.building.add(id(node))

            def __exit__(self, *exc: object) -> None:
                builder.building.discard(id(node))

        return _Guard()


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
    """Parse YAML text; syntax errors become :class:`ConfigError` with the line, and YAML that
    cannot be a pipeline (alias bombs, recursive aliases, list keys) a :class:`YamlStructureError`."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[KeyPath, int] = {}
        data = _Builder(loader).construct(node, (), lines) if node is not None else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"this is not valid YAML: {problem}.", source=name, line=mark.line + 1 if mark else None
        ) from None
    except RecursionError:
        raise YamlStructureError(
            "its values are nested too deeply to read.",
            source=name,
            remedy="A pipeline needs only a few levels of nesting; flatten the file.",
        ) from None
    except ConfigError as exc:
        raise type(exc)(
            exc.detail,
            source=name,
            line=exc.line,
            key_path=exc.key_path,
            remedy=exc.remedy,
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
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputFileError(
                f"Pipeline file {path} is {size / 2**20:.0f} MiB; a pipeline is a small text file "
                f"(at most {MAX_FILE_BYTES // 2**20} MiB are read).",
                remedy="Check that the path names the pipeline YAML, not a data file.",
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(
            f"Cannot read pipeline file {path}: {exc}.", remedy="It must be a UTF-8 YAML text file."
        ) from None
    source = parse_yaml(text, str(path))
    source.folder = Path(os.path.abspath(path)).parent
    return source
