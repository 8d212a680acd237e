"""Read and write landmarks as :class:`PointSet` in world LPS mm, always through the image geometry.

Formats: tables (``.csv``/``.txt``, comma or whitespace separated, optional header), elastix point files
(``point``/``index``), transformix ``outputpoints.txt`` (``OutputPoint``), 3D Slicer ``.fcsv`` and
``.mrk.json``. Voxel coordinates are never guessed: they need the image and an explicit ``axis_order``
(``"xyz"`` = ITK index (i, j, k); ``"zyx"`` = numpy array index (k, j, i)).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medfeat.errors import LandmarkError
from medfeat.geometry import Grid, Image, PointSet
from medfeat.io import landmark_formats as lf
from medfeat.io.atomic import atomic_write_text, check_not_protected
from medfeat.io.checksum import sha256_file

__all__ = ["read_landmarks", "write_landmarks"]

_SPACES = ("lps", "ras", "voxel")
_AXIS_ORDERS = ("xyz", "zyx")


def _grid_of(image: Image | Grid | None) -> Grid | None:
    return image.grid if isinstance(image, Image) else image


def _check_choice(name: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise LandmarkError(f"{name}={value!r} is not valid; expected one of {', '.join(allowed)}.")


def voxel_to_world(
    coords: np.ndarray, grid: Grid, axis_order: str, source: str, check_inside: bool
) -> np.ndarray:
    """Continuous voxel coordinates in ``axis_order`` -> world LPS mm, checking they lie in the grid."""
    if coords.shape[1] != grid.ndim:
        raise LandmarkError(
            f"{source} has {coords.shape[1]}D voxel coordinates but the image is {grid.ndim}D ({grid.describe()})."
        )
    index = coords if axis_order == "xyz" else coords[:, ::-1]
    if check_inside:
        upper = np.asarray(grid.size_ijk) - 0.5
        outside = ~np.all((index >= -0.5) & (index <= upper), axis=1)
        if outside.any():
            first = int(np.argmax(outside))
            raise LandmarkError(
                f"{source}: {int(outside.sum())} of {len(index)} voxel coordinates lie outside the image "
                f"({grid.describe()}), e.g. row {first + 1} = {coords[first].tolist()} read as axis_order="
                f"{axis_order!r}.",
                remedy="Check axis_order ('xyz' = ITK i,j,k; 'zyx' = numpy k,j,i), that the file belongs to "
                "this image, and whether indices are 1-based; pass check_inside=False to accept them.",
            )
    return grid.index_to_world(index)


def read_landmarks(
    path: str | os.PathLike,
    image: Image | Grid | None = None,
    axis_order: str | None = None,
    space: str | None = None,
    fmt: str | None = None,
    check_inside: bool = True,
) -> PointSet:
    """Read landmarks as world LPS mm.

    ``space`` states what a table holds: ``"lps"``/``"ras"`` world mm or ``"voxel"`` (implied by
    ``axis_order``). Formats that state their own space (elastix, transformix, Slicer) use it; Slicer
    ``.fcsv`` without a ``CoordinateSystem`` line is RAS unless ``space`` says otherwise. ``fmt`` forces
    a format (``table``, ``elastix``, ``transformix``, ``fcsv``, ``mrk.json``) instead of detecting it.
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
    file_space = raw.space
    if fmt == "fcsv" and "coordinatesystem" not in text.lower() and space in ("lps", "ras"):
        file_space = space
    if file_space is None:
        file_space = space or ("voxel" if axis_order else None)
    file_space = "voxel" if file_space == "index" else file_space
    if file_space is None:
        raise LandmarkError(
            f"{path} is a plain table of coordinates; it does not say whether they are world mm or voxels.",
            remedy="Pass space='lps' or space='ras' for world millimetres, or an image with axis_order='xyz' "
            "(ITK i,j,k) or 'zyx' (numpy k,j,i) for voxel coordinates.",
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
        grid = _grid_of(image)
        order = raw.axis_order or axis_order
        if raw.axis_order and axis_order and axis_order != raw.axis_order:
            raise LandmarkError(
                f"{path} is an elastix 'index' file, whose indices are ITK (i,j,k) = 'xyz' order, "
                f"but axis_order={axis_order!r} was given.",
                remedy="Drop axis_order for elastix files.",
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
    header = list("xyz"[: coords.shape[1]]) if name.endswith(".csv") and space != "voxel" else None
    sep = "," if name.endswith(".csv") else " "
    return atomic_write_text(
        path, lf.format_table(coords, header, ps.labels if header else None, sep)
    )
