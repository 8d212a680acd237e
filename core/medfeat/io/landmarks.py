"""Read and write landmarks as :class:`PointSet` in world LPS mm, always through the image geometry.

Formats: tables (``.csv``/``.txt``, comma or whitespace separated, optional header), elastix point files
(``point``/``index``), transformix ``outputpoints.txt`` (``OutputPoint``), 3D Slicer ``.fcsv`` and
``.mrk.json``. Voxel coordinates are never guessed: they need the image and an explicit ``axis_order``
(``"xyz"`` = ITK index (i, j, k); ``"zyx"`` = numpy array index (k, j, i)).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from medfeat.errors import LandmarkError
from medfeat.geometry import Grid, Image, PointSet
from medfeat.io import landmark_formats as lf
from medfeat.io.atomic import atomic_write_text, check_not_protected
from medfeat.io.checksum import sha256_file
from medfeat.io.point_files import MARK, write_points
from medfeat.io.relate import edge_box

__all__ = ["check_landmark_dimension", "read_landmarks", "write_landmarks"]

_SPACES = ("lps", "ras", "voxel")
#: World points may lie this far outside their image's box (voxel edges) before they are refused.
DEFAULT_OUTSIDE_TOLERANCE_MM = 10.0
_AXIS_ORDERS = ("xyz", "zyx")
_STATED_SPACE = re.compile(r"space=(lps|ras)\b", re.IGNORECASE)
_STATED_ORDER = re.compile(r"axis_order=(xyz|zyx)\b", re.IGNORECASE)


def _grid_of(image: Image | Grid | None) -> Grid | None:
    return image.grid if isinstance(image, Image) else image


def _check_choice(name: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise LandmarkError(f"{name}={value!r} is not valid; expected one of {', '.join(allowed)}.")


def outside_mm(index: np.ndarray, grid: Grid) -> np.ndarray:
    """How far (mm) each continuous ITK index lies outside the grid's voxel-edge box (0 inside)."""
    upper = np.asarray(grid.size_ijk) - 0.5
    excess = np.maximum(-0.5 - index, 0) + np.maximum(index - upper, 0)
    return np.linalg.norm(excess * np.asarray(grid.spacing), axis=1)


def _fits(index: np.ndarray, grid: Grid) -> bool:
    return bool(np.all(outside_mm(index, grid) == 0))


def voxel_to_world(
    coords: np.ndarray, grid: Grid, axis_order: str, source: str, check_inside: bool = True
) -> np.ndarray:
    """Continuous voxel coordinates in ``axis_order`` -> world LPS mm, checking they lie in the grid."""
    if coords.shape[1] != grid.ndim:
        raise LandmarkError(
            f"{source} has {coords.shape[1]}D voxel coordinates but the image is {grid.ndim}D ({grid.describe()})."
        )
    index = coords if axis_order == "xyz" else coords[:, ::-1]
    if check_inside:
        outside = outside_mm(index, grid) > 0
        if outside.any():
            first = int(np.argmax(outside))
            other = "zyx" if axis_order == "xyz" else "xyz"
            hints = []
            if _fits(index[:, ::-1], grid):
                hints.append(
                    f"read as axis_order '{other}' every point lies inside: set axis_order to '{other}'"
                )
            if _fits(index - 1, grid):
                hints.append(
                    "read as 1-based indices every point lies inside: subtract 1 from every index"
                )
            hint = ("; ".join(hints).capitalize() + ". ") if hints else ""
            raise LandmarkError(
                f"{source}: {int(outside.sum())} of {len(index)} voxel coordinates lie outside the image "
                f"({grid.describe()}), e.g. row {first + 1} = {coords[first].tolist()} read as axis_order="
                f"{axis_order!r}.",
                remedy=hint
                + "Check the landmark file's axis_order ('xyz' = ITK i,j,k; 'zyx' = numpy k,j,i), "
                "that the file belongs to this image, and whether its indices are 1-based; or remove those rows.",
            )
    return grid.index_to_world(index)


def check_world_inside(
    points: np.ndarray, grid: Grid, tolerance_mm: float, source: str, space: str
) -> None:
    """Refuse world LPS points further than ``tolerance_mm`` outside the grid's voxel-edge box."""
    distance = outside_mm(grid.world_to_index(points), grid)
    far = distance > tolerance_mm
    if not far.any():
        return
    first = int(np.argmax(far))
    lo, hi = edge_box(grid)
    hints = []
    flipped = points * np.array([-1.0, -1.0, 1.0][: points.shape[1]])
    if points.shape[1] == 3 and np.all(
        outside_mm(grid.world_to_index(flipped), grid) <= tolerance_mm
    ):
        other = "ras" if space == "lps" else "lps"
        hints.append(
            f"read as {other.upper()} every point lies inside: set the landmark file's space to '{other}'"
        )
    if np.all(outside_mm(points, grid) == 0) or np.all(outside_mm(points[:, ::-1], grid) == 0):
        hints.append(
            "the numbers fit the image as voxel indices: set the landmark file's axis_order"
        )
    hint = ("; ".join(hints).capitalize() + ". ") if hints else ""
    raise LandmarkError(
        f"{source}: {int(far.sum())} of {len(points)} points lie more than {tolerance_mm:g} mm outside "
        f"the image ({grid.describe()}; spanning {np.round(lo, 1).tolist()} to "
        f"{np.round(hi, 1).tolist()} mm LPS), e.g. point {first + 1} at {np.round(points[first], 2).tolist()} "
        f"mm LPS, {distance[first]:.1f} mm outside.",
        remedy=hint
        + "Check that the file belongs to this image (fixed and moving landmarks not swapped) and "
        "that its space (LPS or RAS) is right; or remove those rows.",
    )


def stated_space(text: str) -> tuple[str | None, str | None]:
    """``(space, axis_order)`` a table states on its first line (``# medfeat points: ...``, as
    :func:`write_landmarks` and :func:`medfeat.io.point_files.write_points` write it): ``lps`` or
    ``ras`` for world mm, ``index`` with ``xyz``/``zyx`` for voxels; ``(None, None)`` otherwise."""
    first = text.lstrip("\ufeff").split("\n", 1)[0].strip()
    if not first.startswith(MARK):
        return None, None
    if "voxel" in first and (order := _STATED_ORDER.search(first)):
        return "index", order.group(1).lower()
    if space := _STATED_SPACE.search(first):
        return space.group(1).lower(), None
    return None, None


def _parse(path: Path, text: str, fmt: str | None) -> lf.RawPoints:
    """Parse ``text`` as ``fmt`` (detected when ``None``); refuse empty files and NaN/Inf coordinates."""
    fmt = fmt or lf.detect_format(path, text)
    if fmt not in lf.PARSERS:
        raise LandmarkError(
            f"Unknown landmark format {fmt!r}; expected one of {', '.join(lf.PARSERS)}."
        )
    raw = lf.PARSERS[fmt](path, text)
    if len(raw.coords) == 0:
        raise LandmarkError(
            f"{path} holds no points.", remedy="Check that the right file was given."
        )
    bad = ~np.all(np.isfinite(raw.coords), axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        listed = ", ".join(f"{raw.where(int(r))} {raw.coords[r].tolist()}" for r in rows[:3])
        raise LandmarkError(
            f"{path}: {len(rows)} point(s) have NaN or infinite coordinates ({listed}).",
            remedy="Fix or remove those points (remove the matching rows of the paired landmark file too, "
            "since rows are paired by order).",
        )
    return raw


def _check_dimension(columns: int, ndim: int, path: Path, described: str) -> None:
    if columns != ndim:
        raise LandmarkError(
            f"{path} has {columns} coordinates per point but the image is {ndim}D ({described}).",
            remedy=f"Give a file with exactly {ndim} coordinate columns ({', '.join('xyz'[:ndim])}); if it "
            "has other columns (an index or a label), add a header line naming the x,y,z columns.",
        )


def read_landmark_file(path: str | os.PathLike, fmt: str | None = None) -> lf.RawPoints:
    """Parse a landmark file without converting it: the coordinates exactly as written."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise LandmarkError(
            f"Landmark file {path} does not exist"
            + (" (it is a folder)." if path.is_dir() else "."),
            remedy=f"Check the path (relative paths are resolved from {Path.cwd()}).",
        )
    return _parse(path, path.read_text(encoding="utf-8", errors="replace"), fmt)


def check_landmark_dimension(path: str | os.PathLike, ndim: int, fmt: str | None = None) -> int:
    """Check, before any work, that a landmark file is readable and has ``ndim`` coordinates per point.

    Cheap (parses the file only; no image needed: pass
    ``medfeat.io.image_header.read_image_header(image_path).ndim``). Returns the number of points.
    """
    raw = read_landmark_file(path, fmt)
    _check_dimension(raw.coords.shape[1], ndim, Path(path), f"{ndim} axes")
    return len(raw.coords)


def read_landmarks(
    path: str | os.PathLike,
    image: Image | Grid | None = None,
    axis_order: str | None = None,
    space: str | None = None,
    fmt: str | None = None,
    check_inside: bool = True,
    outside_tolerance_mm: float | None = DEFAULT_OUTSIDE_TOLERANCE_MM,
) -> PointSet:
    """Read landmarks as world LPS mm.

    ``space`` states what a table holds: ``"lps"``/``"ras"`` world mm or ``"voxel"`` (implied by
    ``axis_order``). Formats that state their own space (elastix, transformix, Slicer) use it; Slicer
    ``.fcsv`` without a ``CoordinateSystem`` line is RAS unless ``space`` says otherwise. ``fmt`` forces
    a format (``table``, ``elastix``, ``transformix``, ``fcsv``, ``mrk.json``) instead of detecting it.

    With ``image``, the points are checked against it before anything else is done: one coordinate per
    image axis; voxel coordinates inside the voxel grid (``check_inside``); world points at most
    ``outside_tolerance_mm`` outside the image's box (voxel edges; ``None`` skips that check).
    NaN/Inf coordinates are always refused.
    """
    _check_choice("space", space, _SPACES)
    _check_choice("axis_order", axis_order, _AXIS_ORDERS)
    path = Path(path).expanduser()
    if not path.is_file():
        raise LandmarkError(
            f"Landmark file {path} does not exist"
            + (" (it is a folder)." if path.is_dir() else "."),
            remedy=f"Check the path (relative paths are resolved from {Path.cwd()}).",
        )
    text = path.read_text(encoding="utf-8", errors="replace")
    raw = _parse(path, text, fmt)
    fmt = raw.fmt
    if fmt == "table":
        raw.space, raw.axis_order = stated_space(text)
    grid = _grid_of(image)
    if grid is not None:
        _check_dimension(raw.coords.shape[1], grid.ndim, path, grid.describe())
    file_space = raw.space
    if fmt == "fcsv" and "coordinatesystem" not in text.lower() and space in ("lps", "ras"):
        file_space = space
    if file_space is None:
        file_space = space or ("voxel" if axis_order else None)
    file_space = "voxel" if file_space == "index" else file_space
    if file_space is None:
        raise LandmarkError(
            f"{path} is a plain table of coordinates; it does not say whether they are world mm or voxels.",
            remedy="Set the landmark file's space to 'lps' or 'ras' for world millimetres, or its axis_order to "
            "'xyz' (ITK i,j,k) or 'zyx' (numpy k,j,i) for voxel coordinates of its image.",
        )
    if space is not None and space != file_space:
        raise LandmarkError(
            f"{path} ({fmt}) holds {file_space} coordinates, but space={space!r} was given.",
            remedy="Drop the space argument for this file, or check that the right file was given.",
        )
    meta = {
        "path": str(path),
        "format": fmt,
        "source_space": file_space,
        "sha256": sha256_file(path),
    }
    if file_space == "voxel":
        order = raw.axis_order or axis_order
        if raw.axis_order and axis_order and axis_order != raw.axis_order:
            what = (
                "an elastix 'index' file, whose indices are"
                if fmt == "elastix"
                else "a table whose first line states its indices are"
            )
            raise LandmarkError(
                f"{path} is {what} in {raw.axis_order!r} order, but axis_order={axis_order!r} "
                "was given.",
                remedy="Drop axis_order for this file (it states its own).",
            )
        if grid is None or order is None:
            missing = " and ".join(
                n
                for n, v in (("the image they index (image=...)", grid), ("axis_order", order))
                if v is None
            )
            raise LandmarkError(
                f"{path} holds voxel coordinates; converting them to millimetres needs {missing}.",
                remedy="Pass the image the points were placed on, and axis_order='xyz' (ITK i,j,k, as in elastix "
                "and nibabel) or 'zyx' (numpy k,j,i, as in sitk.GetArrayFromImage).",
            )
        world = voxel_to_world(raw.coords, grid, order, str(path), check_inside)
        meta["axis_order"] = order
    else:
        world = lf.ras_lps(raw.coords) if file_space == "ras" else raw.coords
        if grid is not None and outside_tolerance_mm is not None:
            check_world_inside(world, grid, outside_tolerance_mm, str(path), file_space)
    return PointSet(world, labels=raw.labels, meta=meta)


def write_landmarks(
    points: PointSet | np.ndarray,
    path: str | os.PathLike,
    fmt: str | None = None,
    space: str = "lps",
    image: Image | Grid | None = None,
    axis_order: str | None = None,
    protect: set[Path] | None = None,
) -> Path:
    """Write world LPS points atomically.

    ``fmt`` defaults from the extension: ``.fcsv``, ``.json`` (Slicer, written in LPS and saying so),
    ``.csv`` (comma table) and other (whitespace table). ``fmt="elastix"`` writes a ``point`` file, or an
    ``index`` file when ``space="voxel"``. ``space``: ``lps``/``ras`` world mm, or ``voxel`` (tables and
    elastix; needs ``image`` and ``axis_order``; elastix indices are always ``xyz``). ``protect``: the
    run's input paths, never overwritten.
    """
    _check_choice("space", space, _SPACES)
    _check_choice("axis_order", axis_order, _AXIS_ORDERS)
    ps = points if isinstance(points, PointSet) else PointSet(points)
    path = Path(path).expanduser()
    check_not_protected(path, protect)
    name = path.name.lower()
    fmt = fmt or (
        "fcsv" if name.endswith(".fcsv") else "mrk.json" if name.endswith(".json") else "table"
    )
    labels = ps.labels or [f"F-{i + 1}" for i in range(len(ps))]
    if fmt in ("fcsv", "mrk.json"):
        if space == "voxel" or ps.points.shape[1] != 3:
            raise LandmarkError(
                f"3D Slicer {fmt} files hold 3D world coordinates (LPS or RAS), not {space}."
            )
        formatter = lf.format_fcsv if fmt == "fcsv" else lf.format_mrk_json
        return atomic_write_text(path, formatter(ps.points, labels))
    if fmt == "elastix" and space == "voxel":
        if axis_order not in (None, "xyz"):
            raise LandmarkError(
                "elastix 'index' files are in ITK (i,j,k) order; use axis_order='xyz'."
            )
        axis_order = "xyz"
    coords = ps.points
    if space == "voxel":
        grid = _grid_of(image)
        if grid is None or axis_order is None:
            raise LandmarkError(
                "Writing voxel coordinates needs the image they index and an axis_order.",
                remedy="Pass image=... and axis_order='xyz' (ITK i,j,k) or 'zyx' (numpy k,j,i).",
            )
        index = grid.world_to_index(coords)
        coords = index if axis_order == "xyz" else index[:, ::-1]
    elif space == "ras":
        coords = lf.ras_lps(coords)
    if fmt == "elastix":
        if space == "ras":
            raise LandmarkError(
                "elastix point files are in LPS world coordinates; use space='lps'."
            )
        return atomic_write_text(
            path, lf.format_elastix(coords, "index" if space == "voxel" else "point")
        )
    if fmt != "table":
        raise LandmarkError(
            f"Unknown landmark format {fmt!r}; expected table, elastix, fcsv or mrk.json."
        )
    if name.endswith(".csv") and space != "voxel":  # self-describing: reads back without space=
        return write_points(ps, path, fmt="csv", space=space)
    header = None
    sep = "," if name.endswith(".csv") else " "
    return atomic_write_text(
        path, lf.format_table(coords, header, ps.labels if header else None, sep)
    )
