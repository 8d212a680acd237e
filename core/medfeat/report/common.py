"""Helpers shared by the report's page builders: figure files, guarded sections, metric tables."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medfeat.errors import MedfeatError
from medfeat.report.page import FigureRef, Section, Table, safe_name


@dataclass
class Output:
    """Where one page of the report goes: ``report/<name>.html`` and its files in ``report/<name>/``."""

    report_dir: Path
    name: str

    @classmethod
    def for_case(cls, report_dir: Path, case_id: str, taken: set[str] | None = None) -> Output:
        """The output of a case's page; ``taken``: names already used (``index`` always is)."""
        taken = taken if taken is not None else set()
        base = name = safe_name(case_id)
        n = 1
        while name in taken or name == "index":
            n += 1
            name = f"{base}-{n}"
        taken.add(name)
        return cls(report_dir, name)

    @property
    def page_path(self) -> Path:
        return self.report_dir / f"{self.name}.html"

    @property
    def files_dir(self) -> Path:
        d = self.report_dir / self.name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def file(self, filename: str) -> Path:
        return self.files_dir / filename

    def href(self, path: Path) -> str:
        """``path`` relative to the report folder (where every page lies), with forward slashes."""
        return Path(os.path.relpath(path, self.report_dir)).as_posix()

    def add_figure(self, section: Section, fig: Any, filename: str, caption: str) -> Path:
        from medfeat.report.figures import save_png

        path = save_png(fig, self.file(filename))
        section.figures.append(FigureRef(self.href(path), caption))
        return path


@contextlib.contextmanager
def attempt(section: Section, what: str) -> Iterator[None]:
    """Run a figure's code; a failure becomes a note on the page (the report goes on)."""
    try:
        yield
    except MedfeatError as exc:
        section.note(f"{what}: {exc.message}", "error")
    except Exception as exc:  # a figure must never stop the report; say what went wrong instead
        section.note(f"{what} could not be drawn: {type(exc).__name__}: {exc}", "error")


STAT_COLUMNS = ("mean", "std", "median", "p25", "p75", "p95", "max", "n")


def metrics_tables(metrics: dict[str, Any]) -> list[Table]:
    """Scalars, statistics (mean, std, ...) and per-label values of a metrics dict, as tables."""
    scalars, stats, per_label = [], {}, {}
    for key, value in metrics.items():
        if isinstance(value, dict) and value and any(k in value for k in ("mean", "median")):
            stats[key] = value
        elif isinstance(value, dict) and value and all(_is_number(v) for v in value.values()):
            per_label[key] = value
        elif isinstance(value, (int, float, str, bool)) or value is None:
            scalars.append([key, value])
    tables = []
    if scalars:
        tables.append(Table(["metric", "value"], scalars, caption="Values"))
    if stats:
        cols = [c for c in STAT_COLUMNS if any(c in s for s in stats.values())]
        rows = [[k, *[s.get(c) for c in cols]] for k, s in stats.items()]
        tables.append(Table(["metric", *cols], rows, caption="Distributions (mm for tre_*)"))
    if per_label:
        labels = sorted({k for v in per_label.values() for k in v}, key=_natural)
        rows = [[lab, *[per_label[k].get(lab) for k in per_label]] for lab in labels]
        tables.append(Table(["label", *per_label], rows, caption="Per label"))
    return tables


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _natural(text: str) -> tuple[int, int | str]:
    return (0, int(text)) if str(text).isdigit() else (1, str(text))


def read_points_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """World points ``[N, 3]`` of a medfeat points CSV, and its ``score`` column if any.

    ``#`` lines are skipped; the header names the columns (``x,y,z`` with an optional ``label``,
    as :func:`medfeat.io.point_files.write_points` writes, or ``x_mm_lps,y_mm_lps,z_mm_lps,score``
    as the correspondence pipeline writes); without such names the first three columns are used.
    """
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f) if r and not r[0].lstrip().startswith("#")]
    if not rows:
        return np.zeros((0, 3)), None
    header = [h.strip().lower() for h in rows[0]]
    body = rows[1:]
    cols = []
    for axis in "xyz":
        names = (axis, f"{axis}_mm_lps", f"{axis}_mm")
        cols.append(next((header.index(n) for n in names if n in header), None))
    if None in cols:
        cols = [0, 1, 2]
    values = np.asarray([[float(r[c]) for c in cols] for r in body], dtype=np.float64)
    score = None
    if "score" in header:
        score = np.asarray([float(r[header.index("score")]) for r in body], dtype=np.float64)
    return values.reshape(len(body), 3), score


def write_csv(path: Path, columns: list[str], rows: list[list[Any]]) -> Path:
    from medfeat.io.atomic import atomic_write_text

    def cell(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = [",".join(columns)] + [",".join(cell(v) for v in row) for row in rows]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def metrics_overview(metrics: dict | None, input_notes: list[str]) -> Section:
    """A case page's first section: its metrics tables, and notes on its inputs (a changed or
    differing input is a warning, a missing one a plain note)."""
    overview = Section("Metrics")
    if metrics:
        overview.tables += metrics_tables(metrics)
    else:
        overview.note("This case has no metrics.json.")
    for note in input_notes:
        overview.note(note, "warning" if "changed" in note or "differs" in note else "missing")
    return overview
