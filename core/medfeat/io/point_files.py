"""Write points in every landmark format medfeat reads, with headers that state their space.

Formats (:data:`POINT_FORMATS`):

``csv``
    World mm table: a ``# medfeat points: world mm, space=LPS`` line (or ``RAS``), then the header
    ``label,x,y,z`` and one row per point.
``voxel-csv``
    Voxel indices of a stated image: ``# medfeat points: voxel indices, axis_order=xyz`` (ITK
    i, j, k) or ``zyx`` (numpy k, j, i), a ``# columns:`` line naming them, the image grid, then
    plain rows (medfeat's table reader takes no label column for voxel tables).
``elastix`` / ``elastix-index``
    elastix/transformix input point files: ``point`` (world LPS mm) or ``index`` (ITK i, j, k).
``transformix``
    transformix's ``outputpoints.txt`` layout: ``InputPoint``, ``OutputPoint`` and ``Deformation``.
``fcsv`` / ``mrk.json``
    3D Slicer markups, written in LPS and saying so.

:func:`read_points` is :func:`medfeat.io.landmarks.read_landmarks` that also understands the first
line written here, so a file written by :func:`write_points` reads back without stating its space.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from medfeat.errors import LandmarkError
from medfeat.geometry import Grid, Image, PointSet
from medfeat.io import landmark_formats as lf
from medfeat.io.atomic import atomic_write_text

__all__ = ["MARK", "POINT_FORMATS", "point_format_for", "read_points", "write_points", "format_of"]

POINT_FORMATS = ("csv", "voxel-csv", "elastix", "elastix-index", "transformix", "fcsv", "mrk.json")
#: The first line of a table written here; it states the table's space.
MARK = "# medfeat points:"
_SPACE = re.compile(r"space=(lps|ras)", re.IGNORECASE)
_ORDER = re.compile(r"axis_order=(xyz|zyx)", re.IGNORECASE)


def point_format_for(path: str | os.PathLike, fmt: str | None = None) -> str | None:
    """``fmt`` checked, else the format the file name implies (``None`` when it does not)."""
    if fmt is not None:
        if fmt not in POINT_FORMATS:
            raise LandmarkError(
                f"Unknown point format {fmt!r}.", remedy=f"Use one of {', '.join(POINT_FORMATS)}."
            )
        return fmt
    name = Path(path).name.lower()
    if name.endswith(".fcsv"):
        return "fcsv"
    if name.endswith(".json"):
        return "mrk.json"
    if name.endswith(".csv"):
        return "csv"
    if name.startswith("outputpoints"):
        return "transformix"
    return None


def format_of(points: PointSet) -> tuple[str, str | None]:
    """The :data:`POINT_FORMATS` name and axis order of the file ``points`` were read from."""
    fmt, space = points.meta.get("format"), points.meta.get("source_space")
    if fmt == "table":
        return ("voxel-csv", points.meta.get("axis_order")) if space == "voxel" else ("csv", None)
    if fmt == "elastix" and space == "voxel":
        return "elastix-index", "xyz"
    return (fmt if fmt in POINT_FORMATS else "csv"), None


def _grid_of(image: Image | Grid | None) -> Grid | None:
    return image.grid if isinstance(image, Image) else image


def _need_grid(fmt: str, grid: Grid | None, axis_order: str | None) -> None:
    if grid is None or axis_order not in ("xyz", "zyx"):
        missing = " and ".join(
            n for n, v in (("the image they index", grid), ("an axis order", axis_order)) if not v
        )
        raise LandmarkError(
            f"Writing {fmt} voxel coordinates needs {missing}.",
            remedy="Pass the image of the points' space (--out-image) and --out-axis-order xyz "
            "(ITK i,j,k) or zyx (numpy k,j,i).",
        )


def _row(values: np.ndarray, sep: str = ",") -> str:
    return sep.join(f"{v:.6f}" for v in values)


def write_points(
    points: PointSet | np.ndarray,
    path: str | os.PathLike,
    fmt: str | None = None,
    space: str = "lps",
    image: Image | Grid | None = None,
    axis_order: str | None = None,
    source: PointSet | np.ndarray | None = None,
) -> Path:
    """Write world LPS ``points`` atomically as ``fmt`` (default: from the file name).

    ``space``: ``lps`` or ``ras`` for ``csv`` (the other formats state their own). ``image`` and
    ``axis_order``: for voxel formats. ``source``: the points before mapping, written as
    transformix's ``InputPoint`` (and ``Deformation``).
    """
    ps = points if isinstance(points, PointSet) else PointSet(points)
    path = Path(path).expanduser()
    fmt = point_format_for(path, fmt)
    if fmt is None:
        raise LandmarkError(
            f"The point format of {path.name} is not clear from its name.",
            remedy=f"State it (--out-format / fmt=): one of {', '.join(POINT_FORMATS)}.",
        )
    space = space.lower()
    if space not in ("lps", "ras"):
        raise LandmarkError(f"space={space!r} is not valid; use lps or ras.")
    if space == "ras" and fmt != "csv":
        raise LandmarkError(
            f"{fmt} files are written in LPS (they say so in the file); RAS is for csv tables.",
            remedy="Drop the RAS request, or write a csv table.",
        )
    coords, n = ps.points, ps.points.shape[1]
    labels = ps.labels or [str(i + 1) for i in range(len(ps))]
    grid = _grid_of(image)
    if fmt == "csv":
        values = lf.ras_lps(coords) if space == "ras" else coords
        lines = [f"{MARK} world mm, space={space.upper()}", "label," + ",".join("xyz"[:n])]
        lines += [f"{lab},{_row(c)}" for lab, c in zip(labels, values, strict=True)]
        return atomic_write_text(path, "\n".join(lines) + "\n")
    if fmt == "voxel-csv":
        _need_grid(fmt, grid, axis_order)
        index = grid.world_to_index(coords)
        cols = "ijk"[:n] if axis_order == "xyz" else "ijk"[:n][::-1]
        values = index if axis_order == "xyz" else index[:, ::-1]
        order = "ITK i, j, k" if axis_order == "xyz" else "numpy k, j, i"
        lines = [
            f"{MARK} voxel indices, axis_order={axis_order} ({order}), 0-based",
            f"# columns: {','.join(cols)}",
            f"# image grid: {grid.describe()}",
        ]
        lines += [_row(c) for c in values]
        return atomic_write_text(path, "\n".join(lines) + "\n")
    if fmt in ("elastix", "elastix-index"):
        if fmt == "elastix-index":
            _need_grid(fmt, grid, "xyz" if axis_order in (None, "xyz") else axis_order)
            if axis_order not in (None, "xyz"):
                raise LandmarkError(
                    "elastix 'index' files are in ITK (i, j, k) order.",
                    remedy="Use --out-axis-order xyz (or leave it out) for elastix-index.",
                )
            return atomic_write_text(path, lf.format_elastix(grid.world_to_index(coords), "index"))
        return atomic_write_text(path, lf.format_elastix(coords, "point"))
    if fmt == "transformix":
        return atomic_write_text(path, _format_transformix(coords, source))
    if n != 3:
        raise LandmarkError(f"3D Slicer {fmt} files hold 3D points; these are {n}D.")
    formatter = lf.format_fcsv if fmt == "fcsv" else lf.format_mrk_json
    return atomic_write_text(path, formatter(coords, labels))


def _bracket(values: np.ndarray) -> str:
    return "[ " + " ".join(f"{v:.6f}" for v in values) + " ]"


def _format_transformix(coords: np.ndarray, source: PointSet | np.ndarray | None) -> str:
    src = None
    if source is not None:
        src = source.points if isinstance(source, PointSet) else np.atleast_2d(source)
        if src.shape != coords.shape:
            raise LandmarkError(
                f"{len(src)} input points for {len(coords)} output points.",
                remedy="Pass the points before mapping, row for row.",
            )
    lines = []
    for i, c in enumerate(coords):
        parts = [f"Point\t{i}"]
        if src is not None:
            parts.append(f"InputPoint = {_bracket(src[i])}")
        parts.append(f"OutputPoint = {_bracket(c)}")
        if src is not None:
            parts.append(f"Deformation = {_bracket(c - src[i])}")
        lines.append("\t; ".join(parts))
    return "\n".join(lines) + "\n"


def read_points(
    path: str | os.PathLike,
    image: Image | Grid | None = None,
    axis_order: str | None = None,
    space: str | None = None,
    fmt: str | None = None,
    check_inside: bool = True,
) -> PointSet:
    """:func:`~medfeat.io.landmarks.read_landmarks`, taking the space and axis order from the
    ``# medfeat points:`` line of a table written by :func:`write_points` when not given."""
    from medfeat.io.landmarks import read_landmarks

    path = Path(path).expanduser()
    if space is None and axis_order is None and path.is_file():
        with path.open(encoding="utf-8", errors="replace") as fh:
            first = fh.readline()
        if first.startswith(MARK):
            if "voxel" in first and (m := _ORDER.search(first)):
                space, axis_order = "voxel", m.group(1).lower()
            elif m := _SPACE.search(first):
                space = m.group(1).lower()
    return read_landmarks(path, image, axis_order, space, fmt, check_inside)
