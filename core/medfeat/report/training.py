"""Loss curves of training and pretraining runs, from whatever the output folder recorded.

Sources, in order: ``training_log.csv`` or ``losses.csv`` (a ``step`` column and one numeric column
per curve), ``metrics.json``'s ``history`` (a list of ``{"step": ..., name: value}``), and the
``step N: loss X`` lines of ``medfeat.log``.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np

from medfeat.report import figures as F
from medfeat.report.common import Output, attempt, metrics_tables
from medfeat.report.page import Section

CSV_NAMES = ("training_log.csv", "losses.csv")
_LOG_LOSS = re.compile(r"step (\d+)\D{0,3}loss[ =:]+([-+0-9.eE]+|nan|inf)")

Curves = dict[str, tuple[np.ndarray, np.ndarray]]


def curves_from_csv(path: Path) -> Curves:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    x_key = "step" if "step" in rows[0] else next(iter(rows[0]))
    curves = {}
    for key in rows[0]:
        if key == x_key:
            continue
        pairs = [(_num(r.get(x_key)), _num(r.get(key))) for r in rows]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        if pairs:
            xs, ys = zip(*pairs, strict=True)
            curves[key] = (np.asarray(xs), np.asarray(ys))
    return curves


def curves_from_history(history: list[dict[str, Any]]) -> Curves:
    rows = [h for h in history if isinstance(h, dict) and _num(h.get("step")) is not None]
    keys = {k for h in rows for k, v in h.items() if k not in ("step", "n") and _num(v) is not None}
    curves = {}
    for key in sorted(keys):
        pairs = [(h["step"], _num(h.get(key))) for h in rows if _num(h.get(key)) is not None]
        xs, ys = zip(*pairs, strict=True)
        curves[f"validation {key}" if key in ("dice", "iou") else key] = (
            np.asarray(xs),
            np.asarray(ys),
        )
    return curves


def curves_from_log(path: Path) -> Curves:
    steps, losses = [], []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _LOG_LOSS.search(line)
        if m:
            steps.append(int(m.group(1)))
            losses.append(float(m.group(2)))
    return {"loss (from medfeat.log)": (np.asarray(steps), np.asarray(losses))} if steps else {}


def find_curves(out_dir: Path, metrics: dict[str, Any] | None) -> tuple[Curves, list[str]]:
    """Every loss/validation curve the folder holds, and where they came from."""
    curves: Curves = {}
    sources = []
    for name in CSV_NAMES:
        if (out_dir / name).is_file():
            found = curves_from_csv(out_dir / name)
            curves |= found
            sources += [name] if found else []
    history = (metrics or {}).get("history")
    if isinstance(history, list):
        found = curves_from_history(history)
        curves |= found
        sources += ["metrics.json history"] if found else []
    if not any("loss" in k for k in curves) and (out_dir / "medfeat.log").is_file():
        found = curves_from_log(out_dir / "medfeat.log")
        curves |= found
        sources += ["medfeat.log"] if found else []
    return curves, sources


def training_section(
    out: Output, out_dir: Path, metrics: dict[str, Any] | None, kind: str
) -> Section:
    section = Section("Training" if kind == "segmentation" else "Pretraining")
    if metrics:
        summary = {k: v for k, v in metrics.items() if k not in ("history", "cases")}
        section.tables += metrics_tables(summary)
    with attempt(section, "Loss curves"):
        curves, sources = find_curves(out_dir, metrics)
        if not curves:
            section.note(
                "This folder records no loss history (training_log.csv, metrics.json 'history', or "
                "'step N: loss X' lines in medfeat.log), so no curves are drawn."
            )
            return section
        out.add_figure(
            section,
            F.curves_figure(curves),
            "curves.png",
            f"Training curves against the optimisation step (from {', '.join(sources)}).",
        )
    for p in sorted(out_dir.glob("*.pt")) + sorted(out_dir.glob("checkpoints/*.pt")):
        section.links.append((f"{p.relative_to(out_dir)} (checkpoint)", out.href(p)))
    return section


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None
