"""The report's index page: one row per case (sortable, linked), distributions, failures, provenance."""

from __future__ import annotations

from typing import Any

import numpy as np

from medfeat.report import figures as F
from medfeat.report.common import Output, attempt
from medfeat.report.folder import RunFolder
from medfeat.report.page import Section, Table

#: Columns of the case table per pipeline kind: (header, function of a case's metrics).
COLUMNS: dict[str, list[tuple[str, Any]]] = {
    "registration": [
        ("TRE before (mm)", lambda m: _get(m, "tre_mm_before", "mean")),
        ("TRE after (mm)", lambda m: _get(m, "tre_mm_after", "mean")),
        ("TRE p95 after (mm)", lambda m: _get(m, "tre_mm_after", "p95")),
        ("SDlogJ", lambda m: m.get("sdlogj")),
        ("folding (%)", lambda m: m.get("folding_pct")),
        ("mean Dice after", lambda m: _mean_of(m.get("dice_after"))),
        ("time (s)", lambda m: m.get("seconds")),
    ],
    "correspondence": [
        ("queries", lambda m: m.get("num_queries")),
        ("mean score", lambda m: m.get("mean_score")),
        ("error before (mm)", lambda m: _get(m, "tre_mm_before", "mean")),
        ("error after (mm)", lambda m: _get(m, "tre_mm_after", "mean")),
        ("time (s)", lambda m: m.get("seconds")),
    ],
    "segmentation": [
        ("mean Dice", lambda m: m.get("mean_dice")),
        ("labels", lambda m: len(m.get("dice") or {}) or None),
    ],
}
#: The columns whose distribution over cases is plotted.
DISTRIBUTIONS = (
    "TRE after (mm)",
    "SDlogJ",
    "folding (%)",
    "mean Dice after",
    "error after (mm)",
    "mean Dice",
)


def _get(m: dict, key: str, stat: str) -> float | None:
    v = m.get(key)
    return v.get(stat) if isinstance(v, dict) else None


def _mean_of(values: Any) -> float | None:
    if not isinstance(values, dict) or not values:
        return None
    arr = np.asarray([v for v in values.values() if v is not None], dtype=float)
    return float(np.nanmean(arr)) if arr.size and np.isfinite(arr).any() else None


def cases_section(
    folder: RunFolder, pages: dict[str, str], report_failures: dict[str, str]
) -> Section:
    section = Section("Cases")
    columns = COLUMNS.get(folder.kind, [])
    rows, links = [], []
    for case_id in folder.case_dirs():
        m = folder.case_metrics(case_id) or {}
        rows.append([case_id, *[fn(m) for _, fn in columns]])
        links.append(pages.get(case_id))
    if not rows:
        section.note("This run has no per-case results.", "info")
        return section
    section.text.append("Click a column header to sort; click a case to open its page.")
    section.tables.append(
        Table(["case", *[c for c, _ in columns]], rows, sortable=True, links=links)
    )
    for case_id, why in report_failures.items():
        section.note(f"The page of {case_id} could not be built: {why}", "error")
    return section


def distribution_section(out: Output, table: Table | None) -> Section | None:
    if table is None or len(table.rows) < 2:
        return None
    section = Section("Distributions")
    with attempt(section, "Distributions"):
        values = {
            col: [
                float(r[i])
                for r in table.rows
                if isinstance(r[i], int | float) and r[i] is not None
            ]
            for i, col in enumerate(table.columns)
            if col in DISTRIBUTIONS
        }
        values = {k: v for k, v in values.items() if v}
        if not values:
            section.note("No numeric metric to plot.", "info")
            return section
        out.add_figure(
            section,
            F.distribution_figure(values),
            "distributions.png",
            "Each metric over the cases: box (quartiles, median) and every case as a point.",
        )
    return section


def failures_section(folder: RunFolder) -> Section:
    section = Section("Failures")
    failed = folder.failures()
    if failed:
        section.tables.append(
            Table(["case", "reason"], [[c, r] for c, r in failed], caption="Cases that failed")
        )
    else:
        section.note("No case failed.", "info")
    return section


def provenance_section(out: Output, folder: RunFolder) -> Section:
    section = Section("Provenance")
    prov = folder.provenance
    if prov is None:
        section.note("provenance.json is missing.")
        return section
    config = folder.config
    versions = prov.get("versions") or {}
    plugins = {k.removeprefix("plugin:"): v for k, v in versions.items() if k.startswith("plugin:")}
    rows = [
        ["created", prov.get("created")],
        ["command", " ".join(map(str, prov.get("command") or []))],
        [
            "pipeline",
            f"{config.get('kind')}" + (f" ({config['mode']})" if config.get("mode") else ""),
        ],
        ["description", config.get("description")],
        ["dataset", (config.get("data") or {}).get("name")],
        ["components", ", ".join(_components(config))],
        ["device", prov.get("device")],
        ["seed", prov.get("seed")],
        ["processes", prov.get("world_size")],
        ["overrides", " ".join(prov.get("overrides") or []) or None],
        ["python", prov.get("python")],
        ["platform", prov.get("platform")],
        *[
            [name, versions[name]]
            for name in ("medfeat", "torch", "numpy", "SimpleITK")
            if name in versions
        ],
        ["plugins", ", ".join(f"{k} {v}" for k, v in sorted(plugins.items()))],
    ]
    section.tables.append(
        Table(["", ""], [r for r in rows if r[1] not in (None, "")], caption="Run")
    )
    timings = prov.get("timings_s") or {}
    if timings:
        section.tables.append(
            Table(
                ["step", "seconds"],
                [[k, float(v)] for k, v in timings.items()],
                caption="Time per step (s)",
            )
        )
    section.links.append(
        (
            "provenance.json (everything, with the resolved configuration)",
            out.href(folder.path / "provenance.json"),
        )
    )
    if (folder.path / "medfeat.log").is_file():
        section.links.append(
            ("medfeat.log (the run's messages and progress)", out.href(folder.path / "medfeat.log"))
        )
    return section


def _components(config: dict) -> list[str]:
    out = []
    for key, value in config.items():
        if isinstance(value, dict) and "name" in value and key not in ("data", "output"):
            out.append(f"{key}: {value['name']}")
        elif (
            isinstance(value, list)
            and value
            and all(isinstance(v, dict) and "name" in v for v in value)
        ):
            out.append(f"{key}: {', '.join(v['name'] for v in value)}")
    return out
