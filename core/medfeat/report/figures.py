"""Figure functions of the QC report (matplotlib, Agg canvas, no pyplot state).

Panels are drawn in world millimetres (:mod:`medfeat.report.planes`), so markers, contours and the
scale bar are placed in mm and land where the anatomy is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medfeat.report.planes import PlaneView

#: Colours of label values 1, 2, ... in overlays (cycled).
LABEL_COLOURS = (
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4",
    "#46f0f0", "#f032e6", "#bcf60c", "#fabebe", "#008080", "#e6beff",
)  # fmt: skip
PANEL_IN = 2.8
DPI = 100


def new_figure(nrows: int, ncols: int, panel_in: float = PANEL_IN, extra_h_in: float = 0.0):
    """A matplotlib Figure with an Agg canvas and a grid of axes (``axes[row][col]``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(ncols * panel_in, nrows * panel_in + extra_h_in), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save_png(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as PNG (atomically) and release it."""
    import io

    from medfeat.io.atomic import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    fig.clf()
    return atomic_write_bytes(path, buf.getvalue())


def intensity_window(
    *arrays: np.ndarray, low: float = 1.0, high: float = 99.0
) -> tuple[float, float]:
    """Display range from the ``low``/``high`` percentiles of the finite values."""
    vals = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(vals, [low, high])
    return (float(lo), float(hi)) if hi > lo else (float(lo), float(lo) + 1.0)


def normalise(view: PlaneView, window: tuple[float, float]) -> PlaneView:
    """Intensities mapped to [0, 1] by ``window`` (clipped; NaN stays NaN)."""
    lo, hi = window
    return view.with_data(np.clip((view.data - lo) / (hi - lo), 0.0, 1.0))


def nice_length_mm(width_mm: float, fraction: float = 0.25) -> float:
    """The largest 1, 2 or 5 x 10^k mm not longer than ``fraction`` of ``width_mm``."""
    target = max(width_mm * fraction, 1e-6)
    k = np.floor(np.log10(target))
    for m in (5.0, 2.0, 1.0):
        if m * 10**k <= target:
            return float(m * 10**k)
    return float(10**k)


def add_scale_bar(ax: Any, view: PlaneView, length_mm: float | None = None) -> tuple[Any, float]:
    """A white bar of ``length_mm`` (default: a round length near a quarter of the panel) with its
    label, at the panel's lower left, drawn in data (mm) coordinates. Returns ``(bar, length_mm)``."""
    from matplotlib.patches import Rectangle

    left, right, bottom, top = view.extent
    width = abs(right - left)
    height = abs(top - bottom)
    length_mm = length_mm or nice_length_mm(width)
    down = 1.0 if view.plane.v_down else -1.0  # sign of "down" on the panel's v axis
    x0 = left + 0.05 * width
    y_bottom = bottom - down * 0.06 * height  # a bit above the lower edge
    thickness = 0.015 * height
    bar = Rectangle(
        (x0, y_bottom - (thickness if down > 0 else 0.0)),
        length_mm,
        thickness,
        facecolor="white",
        edgecolor="black",
        linewidth=0.5,
        zorder=5,
    )
    ax.add_patch(bar)
    label = f"{length_mm:g} mm"
    ax.text(
        x0 + length_mm + 0.02 * width,
        y_bottom - down * thickness / 2,
        label,
        color="white",
        ha="left",
        va="center",
        fontsize=7,
        zorder=5,
        bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0},
    )
    return bar, length_mm


def add_orientation_letters(ax: Any, view: PlaneView) -> None:
    left, right, top, bottom = view.plane.letters
    style = {"color": "yellow", "fontsize": 8, "transform": ax.transAxes, "zorder": 6}
    for text, x, y, ha, va in (
        (left, 0.01, 0.5, "left", "center"),
        (right, 0.99, 0.5, "right", "center"),
        (top, 0.5, 0.99, "center", "top"),
        (bottom, 0.5, 0.01, "center", "bottom"),
    ):
        if text:
            ax.text(x, y, text, ha=ha, va=va, **style)


def show_view(
    ax: Any,
    view: PlaneView,
    *,
    cmap: str = "gray",
    vmin: float | None = None,
    vmax: float | None = None,
    norm: Any = None,
    title: str | None = None,
    scale_bar: bool = True,
) -> Any:
    """Draw ``view`` in world mm on ``ax`` (orientation letters, optional scale bar)."""
    data = view.data
    if data.ndim == 3 and data.shape[-1] not in (3, 4):
        data = data[..., 0]
    kwargs: dict[str, Any] = {"norm": norm} if norm is not None else {"vmin": vmin, "vmax": vmax}
    im = ax.imshow(
        np.ma.masked_invalid(data) if data.ndim == 2 else np.nan_to_num(data),
        extent=view.extent,
        origin="upper",
        cmap=cmap,
        interpolation="nearest",
        **kwargs,
    )
    ax.set_facecolor("black")
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    add_orientation_letters(ax, view)
    if scale_bar:
        add_scale_bar(ax, view)
    if title:
        ax.set_title(title, fontsize=9)
    return im


def plane_title(view: PlaneView) -> str:
    if view.plane.name == "image":
        return ""
    axis = "xyz"[view.plane.normal]
    return f"{view.plane.name} ({axis} = {view.center_mm[view.plane.normal]:.1f} mm)"


def grid_figure(
    rows: Sequence[tuple[str, Sequence[PlaneView], dict[str, Any]]],
    colorbar: str | None = None,
) -> Any:
    """Rows of plane panels: ``(row label, views, show_view keyword arguments)``."""
    ncols = max(len(views) for _, views, _ in rows)
    fig, axes = new_figure(len(rows), ncols)
    last = None
    for r, (label, views, kwargs) in enumerate(rows):
        for c in range(ncols):
            ax = axes[r][c]
            if c >= len(views):
                ax.set_axis_off()
                continue
            title = plane_title(views[c]) if r == 0 else None
            last = show_view(ax, views[c], title=title, **kwargs)
        axes[r][0].set_ylabel(label, fontsize=9)
    if colorbar and last is not None:
        cbar = fig.colorbar(last, ax=[a for row in axes for a in row], shrink=0.8)
        cbar.set_label(colorbar)
    else:
        fig.tight_layout()
    return fig


def add_contours(ax: Any, view: PlaneView, labels: Sequence[int], linestyle: str = "solid") -> None:
    """Outlines of each label value of a label ``view`` (sampled with order 0), in world mm."""
    uu, vv = view.pixel_grid_mm()
    data = np.nan_to_num(view.data)
    for value in labels:
        mask = (data == value).astype(float)
        if mask.any() and not mask.all():
            ax.contour(
                uu,
                vv,
                mask,
                levels=[0.5],
                colors=[label_colour(value)],
                linewidths=1.0,
                linestyles=linestyle,
            )


def label_colour(value: int) -> str:
    return LABEL_COLOURS[(int(value) - 1) % len(LABEL_COLOURS)]


def contour_figure(
    base: Sequence[PlaneView],
    overlays: Sequence[tuple[str, Sequence[PlaneView], str]],
    labels: Sequence[int],
    window: tuple[float, float],
    row_label: str,
) -> Any:
    """One row: ``base`` panels with label outlines ``(name, label views, linestyle)`` on top."""
    fig, axes = new_figure(1, len(base), extra_h_in=0.3)
    for c, view in enumerate(base):
        ax = axes[0][c]
        show_view(ax, view, vmin=window[0], vmax=window[1], title=plane_title(view))
        for _, views, style in overlays:
            add_contours(ax, views[c], labels, style)
    axes[0][0].set_ylabel(row_label, fontsize=9)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=label_colour(v), label=f"label {v}") for v in labels[:12]]
    handles += [Line2D([], [], color="grey", linestyle=s, label=n) for n, _, s in overlays]
    fig.legend(
        handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=7, frameon=False
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def jacobian_figure(views: Sequence[PlaneView], folded_voxels: int, folded_pct: float) -> Any:
    """det J in a diverging map centred on 1 (blue: expansion, red: compression); folding in black
    with a magenta outline."""
    from matplotlib.colors import TwoSlopeNorm

    fig, axes = new_figure(1, len(views), extra_h_in=0.4)
    im = None
    for c, view in enumerate(views):
        ax = axes[0][c]
        im = show_view(
            ax,
            view,
            cmap="RdBu",
            norm=TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=2.0),
            title=plane_title(view),
        )
        folded = np.nan_to_num(view.data, nan=1.0) <= 0
        if folded.any():
            ax.imshow(
                np.ma.masked_where(~folded, folded.astype(float)),
                extent=view.extent,
                origin="upper",
                cmap="gray_r",
                vmin=0,
                vmax=1,
                interpolation="nearest",
                zorder=3,
            )
            uu, vv = view.pixel_grid_mm()
            ax.contour(
                uu,
                vv,
                folded.astype(float),
                levels=[0.5],
                colors=["magenta"],
                linewidths=1.0,
                zorder=4,
            )
    cbar = fig.colorbar(im, ax=[a for row in axes for a in row], shrink=0.8)
    cbar.set_label("det J (1 = volume kept; <= 0 = folding)")
    fig.suptitle(
        f"Folding: {folded_voxels} voxels ({folded_pct:.3f} %), shown in black with a magenta outline",
        fontsize=9,
    )
    return fig


def magnitude_figure(views: Sequence[PlaneView], vmax_mm: float) -> Any:
    return grid_figure(
        [("|u| (mm)", views, {"cmap": "magma", "vmin": 0.0, "vmax": max(vmax_mm, 1e-6)})],
        colorbar="displacement magnitude (mm)",
    )


def histogram_figure(series: dict[str, np.ndarray], xlabel: str) -> Any:
    """Overlaid histograms of each named series, with their means marked."""
    fig, axes = new_figure(1, 1, panel_in=3.6)
    ax = axes[0][0]
    values = [np.asarray(v, dtype=float) for v in series.values() if len(v)]
    allv = np.concatenate(values) if values else np.zeros(1)
    bins = np.linspace(0.0, max(float(np.nanmax(allv)), 1e-6) * 1.05, 25)
    for i, (name, v) in enumerate(series.items()):
        v = np.asarray(v, dtype=float)
        if not len(v):
            continue
        colour = f"C{i}"
        ax.hist(v, bins=bins, alpha=0.55, color=colour, label=f"{name} (mean {np.mean(v):.2f})")
        ax.axvline(float(np.mean(v)), color=colour, linestyle="--", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def point_rows_figure(
    rows: Sequence[tuple[str, Sequence[PlaneView], dict[str, np.ndarray]]],
    window: tuple[float, float],
    overlay: Sequence[Sequence[PlaneView] | None] | None = None,
) -> Any:
    """Rows of plane panels with marked points: ``(row label, views, {marker name: points})``.

    Marker names choose the style: ``true``/``query`` (green circle), ``predicted`` (red cross),
    anything else (cyan plus). Points off a panel's plane are drawn at their in-plane projection.
    ``overlay``: per row, views of a map (e.g. similarity) drawn translucently over the image."""
    styles = {
        "true": {"marker": "o", "mfc": "none", "mec": "lime", "ms": 9, "mew": 1.6},
        "query": {"marker": "o", "mfc": "none", "mec": "lime", "ms": 9, "mew": 1.6},
        "predicted": {"marker": "x", "color": "red", "ms": 9, "mew": 1.8},
    }
    ncols = max(len(v) for _, v, _ in rows)
    fig, axes = new_figure(len(rows), ncols)
    for r, (label, views, points) in enumerate(rows):
        for c, view in enumerate(views):
            ax = axes[r][c]
            show_view(ax, view, vmin=window[0], vmax=window[1], title=plane_title(view))
            if overlay is not None and overlay[r] is not None:
                sim = overlay[r][c]
                ax.imshow(
                    np.ma.masked_invalid(sim.data),
                    extent=sim.extent,
                    origin="upper",
                    cmap="jet",
                    alpha=0.45,
                    interpolation="nearest",
                    zorder=2,
                )
            for name, pts in points.items():
                uv = view.panel_coords(pts)
                style = styles.get(name, {"marker": "+", "color": "cyan", "ms": 9, "mew": 1.5})
                ax.plot(uv[:, 0], uv[:, 1], linestyle="none", zorder=7, label=name, **style)
        for c in range(len(views), ncols):
            axes[r][c].set_axis_off()
        axes[r][0].set_ylabel(label, fontsize=9)
    legend: dict[str, Any] = {}
    for row in axes:
        for ax in row:
            for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
                legend.setdefault(name, handle)
    handles, names = list(legend.values()), list(legend)
    if handles:
        fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.04, 1, 1))
    else:
        fig.tight_layout()
    return fig


def bar_figure(
    values: dict[str, dict[str, float]], ylabel: str, ylim: tuple[float, float] | None = (0.0, 1.0)
) -> Any:
    """Grouped bars: ``{series name: {category: value}}`` (e.g. Dice per label before/after)."""
    cats = sorted({k for v in values.values() for k in v}, key=_natural)
    fig, axes = new_figure(1, 1, panel_in=max(3.6, 0.45 * len(cats) * max(len(values), 1)))
    ax = axes[0][0]
    width = 0.8 / max(len(values), 1)
    x = np.arange(len(cats))
    for i, (name, v) in enumerate(values.items()):
        heights = [v.get(c, np.nan) for c in cats]
        ax.bar(x + i * width - 0.4 + width / 2, heights, width, label=name, color=f"C{i}")
    ax.set_xticks(x)
    ax.set_xticklabels(cats, rotation=45 if len(cats) > 8 else 0, fontsize=8)
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    if len(values) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def curves_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], xlabel: str = "step") -> Any:
    """One panel per named curve ``(x, y)``; log y-axis when a positive curve spans two decades."""
    n = len(curves)
    ncols = min(n, 3)
    nrows = int(np.ceil(n / ncols))
    fig, axes = new_figure(nrows, ncols, panel_in=3.4)
    for i, (name, (x, y)) in enumerate(curves.items()):
        ax = axes[i // ncols][i % ncols]
        ax.plot(x, y, marker="." if len(x) < 50 else None, linewidth=1)
        y = np.asarray(y, dtype=float)
        finite = y[np.isfinite(y)]
        if finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
            ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.grid(alpha=0.3)
    for i in range(n, nrows * ncols):
        axes[i // ncols][i % ncols].set_axis_off()
    fig.tight_layout()
    return fig


def distribution_figure(metrics: dict[str, list[float]]) -> Any:
    """One panel per metric: a box plot with every case as a point."""
    names = [k for k, v in metrics.items() if any(np.isfinite(v))]
    fig, axes = new_figure(1, max(len(names), 1), panel_in=2.6)
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        ax = axes[0][i]
        v = np.asarray(metrics[name], dtype=float)
        v = v[np.isfinite(v)]
        ax.boxplot(v, widths=0.5, showfliers=False)
        ax.plot(1 + rng.uniform(-0.12, 0.12, len(v)), v, "o", color="C0", alpha=0.7, ms=4)
        ax.set_xticks([])
        ax.set_title(f"{name} (n={len(v)})", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    if not names:
        axes[0][0].set_axis_off()
    fig.tight_layout()
    return fig


def _natural(text: str) -> tuple[int, int | str]:
    return (0, int(text)) if str(text).isdigit() else (1, str(text))
