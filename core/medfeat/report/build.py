"""``build_report(out_dir)``: the HTML report of a finished output folder (``out_dir/report/``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from medfeat.report import correspondence, registration, segmentation
from medfeat.report.cohort import (
    cases_section,
    distribution_section,
    failures_section,
    provenance_section,
)
from medfeat.report.common import Output
from medfeat.report.folder import RunFolder
from medfeat.report.page import Note, Page, Section, render
from medfeat.report.training import training_section

REPORT_DIR = "report"
CASE_PAGES = {
    "registration": registration.case_page,
    "correspondence": correspondence.case_page,
    "segmentation": segmentation.case_page,
}


def build_report(out_dir: str | Path, progress: Any = None) -> Path:
    """Write the QC report of the finished output folder ``out_dir``; return its ``index.html``.

    Everything comes from the folder (and the inputs its provenance names, read again): runs and
    ``medfeat report`` share this code. What the folder lacks is skipped with a note on the page.
    The report folder is replaced as a whole.
    """
    folder = RunFolder.open(out_dir)
    report_dir = folder.path / REPORT_DIR
    if report_dir.exists():
        shutil.rmtree(report_dir)
    report_dir.mkdir(parents=True)
    index = Output(report_dir, "index")
    pages, failures = _case_pages(folder, report_dir, progress)

    kind = folder.kind
    page = Page(
        f"{kind.capitalize()} report",
        subtitle=f"{folder.path.resolve()}"
        + (f" · {folder.config['description']}" if folder.config.get("description") else ""),
        nav=[("cases", "#cases"), ("provenance", "#provenance")],
    )
    page.banners += _banners(folder)
    if kind in CASE_PAGES and (kind != "segmentation" or folder.mode != "train"):
        cases = cases_section(folder, pages, failures)
        page.sections.append(cases)
        dist = distribution_section(index, cases.tables[0] if cases.tables else None)
        if dist is not None:
            page.sections.append(dist)
    if kind == "pretraining" or folder.mode == "train":
        page.sections.insert(0, training_section(index, folder.path, folder.metrics, kind))
    page.sections.append(failures_section(folder))
    page.sections.append(provenance_section(index, folder))
    for note in folder.notes:
        page.banners.append(Note(note, "warning"))
    return render(page, report_dir / "index.html")


def _banners(folder: RunFolder) -> list[Note]:
    banners = []
    if not folder.is_result:
        what = "; ".join(folder.random_weights) or "random weights"
        banners.append(
            Note(
                f"NOT A RESULT: this run used RANDOM weights ({what}). It checks speed and "
                "plumbing only.",
                "error",
            )
        )
    return banners


def _case_pages(
    folder: RunFolder, report_dir: Path, progress: Any
) -> tuple[dict[str, str], dict[str, str]]:
    """Write one page per case; returns ``{case: href}`` and ``{case: why its page failed}``."""
    kind = folder.kind
    builder = CASE_PAGES.get(kind)
    case_dirs = folder.case_dirs()
    if builder is None or not case_dirs:
        return {}, {}
    items, why = folder.input_items()
    pages: dict[str, str] = {}
    failures: dict[str, str] = {}
    taken: set[str] = set()

    def build(case_id: str, item: Any, notes: list[str]) -> None:
        out = Output.for_case(report_dir, case_id, taken)
        try:
            page = builder(
                out, case_id, case_dirs[case_id], folder.case_metrics(case_id), item, notes
            )
        except Exception as exc:  # one broken case must not take the whole report down
            failures[case_id] = f"{type(exc).__name__}: {exc}"
            page = Page(f"{case_id}", sections=[Section("Error")])
            page.sections[0].note(f"This page could not be built: {failures[case_id]}", "error")
        page.nav = [("all cases", "index.html")]
        page.banners = _banners(folder) + page.banners
        render(page, out.page_path)
        pages[case_id] = out.href(out.page_path)

    def tracked(iterable):
        return progress.track(iterable, "Report", total=len(case_dirs)) if progress else iterable

    for item in tracked(items):
        case_id = getattr(item, "id", None)
        if case_id in case_dirs and case_id not in pages:
            build(case_id, item, folder.input_changes(case_id, item))
        if len(pages) == len(case_dirs):
            break
    for case_id in case_dirs:
        if case_id not in pages:
            note = (
                f"The run's inputs are not available ({why}); figures that need them are skipped."
                if why
                else "This case was not found again in the run's dataset; figures that need its "
                "inputs are skipped."
            )
            build(case_id, None, [note])
    return pages, failures
