"""The page of one correspondence case: query, predicted and true match on slices, and errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medfeat.report import figures as F
from medfeat.report.common import Output, attempt, metrics_overview, read_points_csv, write_csv
from medfeat.report.page import Page, Section
from medfeat.report.planes import default_pixel_mm, sample_planes, world_bounds

MATCHES = "matches_in_moving_world_lps_mm.csv"
#: Optional similarity maps a matcher may save: ``similarity/query_<index>.nii.gz`` on B's grid.
SIMILARITY_DIR = "similarity"


def rows_per_query(
    path: Path, predicted: np.ndarray, scores: np.ndarray | None, queries: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The matches table's rows placed at their ``query`` index (NaN rows for unmatched queries,
    which the table keeps as comments); tables without that column are returned as they are."""
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f) if r and not r[0].lstrip().startswith("#")]
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if "query" not in header:
        return predicted, scores
    index = np.asarray([int(r[header.index("query")]) for r in rows[1:]], dtype=int)
    n = len(queries) if queries is not None else (int(index.max()) + 1 if len(index) else 0)
    full = np.full((n, 3), np.nan)
    full[index] = predicted
    full_scores = None
    if scores is not None:
        full_scores = np.full(n, np.nan)
        full_scores[index] = scores
    return full, full_scores


def chosen_queries(
    errors: np.ndarray | None, scores: np.ndarray | None, n: int
) -> list[tuple[int, str]]:
    """Queries to show: the worst, the median and the best match by error (else by score)."""
    key, words = (errors, ("worst", "median", "best")) if errors is not None else (
        -np.asarray(scores) if scores is not None else None, ("lowest score", "median score", "highest score"))  # fmt: skip
    if key is None or not len(key) or n == 0:
        return []
    valid = np.flatnonzero(np.isfinite(key))  # unmatched queries have no error or score
    if not len(valid):
        return []
    order = valid[np.argsort(key[valid])[::-1]]
    picks = [
        (int(order[0]), words[0]),
        (int(order[len(order) // 2]), words[1]),
        (int(order[-1]), words[2]),
    ]
    seen, out = set(), []
    for i, w in picks:
        if i not in seen:
            seen.add(i)
            out.append((i, w))
    return out


def case_page(
    out: Output,
    case_id: str,
    case_dir: Path,
    metrics: dict | None,
    item: Any | None,
    input_notes: list[str],
) -> Page:
    page = Page(f"Correspondence · {case_id}", subtitle=str(case_dir))
    overview = metrics_overview(metrics, input_notes)
    overview.links += [(p.name, out.href(p)) for p in sorted(case_dir.iterdir()) if p.is_file()]
    page.sections.append(overview)
    page.sections.append(matches_section(out, case_dir, item))
    return page


def matches_section(out: Output, case_dir: Path, item: Any | None) -> Section:
    section = Section("Matches")
    with attempt(section, "Matches"):
        path = case_dir / MATCHES
        if not path.is_file():
            section.note(f"{MATCHES} is missing.")
            return section
        predicted, scores = read_points_csv(path)
        queries = getattr(getattr(item, "fixed_points", None), "points", None)
        true = getattr(getattr(item, "moving_points", None), "points", None)
        predicted, scores = rows_per_query(path, predicted, scores, queries)
        if not np.isfinite(predicted).all():
            section.note(
                f"{int((~np.isfinite(predicted).all(1)).sum())} of {len(predicted)} queries have "
                "no match (outside A, or their search box misses B): left out below."
            )
        errors = np.linalg.norm(predicted - true, axis=1) if true is not None else None
        if errors is not None:
            rows = [[i, *map(float, predicted[i]), float(scores[i]) if scores is not None else "",
                     float(errors[i])] for i in range(len(predicted))]  # fmt: skip
            csv = write_csv(out.file("match_errors_mm.csv"),
                            ["query", "x_mm", "y_mm", "z_mm", "score", "error_mm"], rows)  # fmt: skip
            section.links.append(("match_errors_mm.csv (one row per query)", out.href(csv)))
            before = np.linalg.norm(queries - true, axis=1) if queries is not None else None
            series = ({"no motion": before} if before is not None else {}) | {
                "matched": errors[np.isfinite(errors)]
            }
            out.add_figure(section, F.histogram_figure(series, "error (mm)"), "match_errors.png",
                           "Distance between predicted and true matches (mm); 'no motion' takes each "
                           "query's own position as its match.")  # fmt: skip
        else:
            section.note(
                "The true matches are unknown (no moving landmarks): errors are not shown."
            )
        if item is None or queries is None:
            section.note("The images are not available: matches are not drawn on slices.")
            return section
        chosen = chosen_queries(errors, scores, len(predicted))
        sim_dir = case_dir / SIMILARITY_DIR
        if not sim_dir.is_dir():
            section.note(
                f"This run saved no similarity maps ({SIMILARITY_DIR}/query_<i>.nii.gz); "
                "only the points are drawn."
            )
        out.add_figure(
            section,
            _query_figure(item, queries, predicted, true, chosen, errors, sim_dir),
            "queries.png",
            "For the worst, median and best query: the query on image A (green circle, first row of "
            "each pair) and, on image B through the true match, the true match (green circle) and "
            "the predicted one (red cross); the similarity map is overlaid where the run saved it.",
        )
    return section


def _query_figure(item, queries, predicted, true, chosen, errors, sim_dir: Path):
    from medfeat.io.images import read_image

    ga, gb = item.fixed.grid, item.moving.grid
    geo_a = {"bounds": world_bounds(ga), "pixel_mm": default_pixel_mm(ga, world_bounds(ga))}
    geo_b = {"bounds": world_bounds(gb), "pixel_mm": default_pixel_mm(gb, world_bounds(gb))}
    rows, overlay, views_all = [], [], []
    for i, word in chosen:
        err = f", {errors[i]:.2f} mm" if errors is not None else ""
        va = sample_planes(item.fixed, queries[i], **geo_a)
        center_b = true[i] if true is not None else predicted[i]
        vb = sample_planes(item.moving, center_b, **geo_b)
        views_all += va + vb
        rows.append((f"A: query {i} ({word})", va, {"query": queries[i][None]}))
        points_b = {"predicted": predicted[i][None]}
        if true is not None:
            points_b = {"true": true[i][None], **points_b}
        rows.append((f"B: match{err}", vb, points_b))
        overlay.append(None)
        sim = sim_dir / f"query_{i}.nii.gz"
        overlay.append(sample_planes(read_image(sim), center_b, **geo_b) if sim.is_file() else None)
    window = F.intensity_window(*[v.data for v in views_all])
    return F.point_rows_figure(rows, window, overlay)
