"""The pieces of a report page and their rendering with the package's jinja2 templates."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Kinds of notes: something the folder does not have, a figure that could not be drawn, a warning.
NOTE_KINDS = ("missing", "error", "warning", "info")


@dataclass
class Note:
    text: str
    kind: str = "missing"


@dataclass
class FigureRef:
    """A PNG of the report, ``src`` relative to the page."""

    src: str
    caption: str
    alt: str = ""


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]]
    caption: str = ""
    sortable: bool = False
    #: per row, the href of its first cell (or None)
    links: list[str | None] = field(default_factory=list)


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    figures: list[FigureRef] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return safe_name(self.title.lower())

    def note(self, text: str, kind: str = "missing") -> None:
        self.notes.append(Note(text, kind))


@dataclass
class Page:
    title: str
    subtitle: str = ""
    banners: list[Note] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    nav: list[tuple[str, str]] = field(default_factory=list)

    def notes(self, kind: str | None = None) -> list[Note]:
        """Every note of the page's sections (of one kind if given)."""
        return [n for s in self.sections for n in s.notes if kind is None or n.kind == kind]


def safe_name(text: str) -> str:
    """A file-name-safe version of ``text`` (case ids become page and folder names)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")
    return name or "case"


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats with ``digits`` significant decimals, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value != value:  # NaN
            return "NaN"
        return f"{value:.{digits}f}" if abs(value) < 1e5 else f"{value:.3g}"
    return str(value)


def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("medfeat.report", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = fmt
    env.filters["sortkey"] = _sort_key
    return env


def _sort_key(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(float(value))
    return str(value if value is not None else "")


def render(page: Page, path: Path, template: str = "page.html") -> Path:
    """Render ``page`` with ``template`` to ``path`` (atomically); returns ``path``."""
    from medfeat import __version__
    from medfeat.io.atomic import atomic_write_text

    html = _environment().get_template(template).render(page=page, version=__version__)
    return atomic_write_text(path, html)
