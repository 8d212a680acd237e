"""The page of one segmented image: predicted and reference masks overlaid, Dice per label."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medfeat.geometry import Image
from medfeat.report import figures as F
from medfeat.report.common import Output, attempt, metrics_overview
from medfeat.report.page import Page, Section
from medfeat.report.planes import default_pixel_mm, sample_planes, world_bounds


def case_page(
    out: Output,
    case_id: str,
    case_dir: Path,
    metrics: dict | None,
    item: Any | None,
    input_notes: list[str],
) -> Page:
    page = Page(f"Segmentation · {case_id}", subtitle=str(case_dir))
    overview = metrics_overview(metrics, input_notes)
    overview.links += [(p.name, out.href(p)) for p in sorted(case_dir.iterdir()) if p.is_file()]
    page.sections += [overview, overlay_section(out, case_dir, item), dice_section(out, metrics)]
    return page


def _centre(labels: Image | None, fallback: Image) -> np.ndarray | None:
    """World centre of the foreground of ``labels`` (None: the image centre)."""
    if labels is None:
        return None
    fg = np.argwhere(labels.numpy() > 0)
    if not len(fg):
        return None
    return labels.grid.array_index_to_world(fg.mean(axis=0))[0]


def overlay_section(out: Output, case_dir: Path, item: Any | None) -> Section:
    from medfeat.io.images import read_image

    section = Section("Masks")
    with attempt(section, "Mask overlays"):
        path = case_dir / "labels.nii.gz"
        predicted = read_image(path) if path.is_file() else None
        image = getattr(item, "image", None)
        reference = getattr(item, "labels", None)
        if predicted is None:
            section.note("labels.nii.gz (the predicted label map) is missing.")
        if reference is None:
            section.note("No reference label map for this image.")
        base = image if image is not None else predicted
        if base is None:
            section.note("Neither the image nor a label map is available.")
            return section
        if image is None:
            section.note("The input image is not available: outlines are drawn on the labels.")
        grid = base.grid
        bounds = world_bounds(grid)
        geometry = {"bounds": bounds, "pixel_mm": default_pixel_mm(grid, bounds)}
        center = _centre(reference if reference is not None else predicted, base)
        views = sample_planes(base, center, **geometry)
        if views[0].data.ndim == 3:  # colour image: a grey version keeps the outlines readable
            views = [v.with_data(v.data[..., :3].mean(axis=-1)) for v in views]
        overlays, labels = [], set()
        for name, labelmap, style in (
            ("reference", reference, "solid"),
            ("predicted", predicted, "dashed"),
        ):
            if labelmap is not None:
                overlays.append((name, sample_planes(labelmap, center, order=0, **geometry), style))
                labels |= {int(v) for v in np.unique(labelmap.numpy()) if v > 0}
        window = F.intensity_window(*[v.data for v in views])
        out.add_figure(
            section,
            F.contour_figure(views, overlays, sorted(labels), window, "image"),
            "masks.png",
            "Reference (solid) and predicted (dashed) outlines per label"
            + (", planes through the centre of the reference mask." if center is not None else "."),
        )
    return section


def dice_section(out: Output, metrics: dict | None) -> Section:
    section = Section("Dice per label")
    with attempt(section, "Dice per label"):
        dice = (metrics or {}).get("dice")
        if not dice:
            section.note("No Dice scores (no reference labels).")
            return section
        out.add_figure(
            section,
            F.bar_figure({"Dice": {str(k): float(v) for k, v in dice.items()}}, "Dice"),
            "dice.png",
            f"Dice per label (mean {metrics.get('mean_dice', float('nan')):.3f}).",
        )
    return section
