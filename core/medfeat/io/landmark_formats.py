"""Parsers and writers for landmark file formats; coordinates come back exactly as the file states them.

Each parser returns :class:`RawPoints`: the numbers, what they are (``lps``/``ras`` world mm, or ``index``
voxel coordinates), and labels. Converting them to world LPS mm is :mod:`medfeat.io.landmarks`' job.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medfeat.errors import LandmarkError

_SPLIT = re.compile(r"[,;\s]+")
_OUTPUT_POINT = re.compile(r"OutputPoint\s*=\s*\[([^\]]*)\]")


@dataclass
class RawPoints:
    """Coordinates as written in a file. ``space``: ``lps``, ``ras``, ``index`` or ``None`` (unstated)."""

    coords: np.ndarray
    space: str | None
    fmt: str
    labels: list[str] | None = None
    axis_order: str | None = None  # only set when the format defines it (elastix ``index`` is xyz)


def _floats(tokens: list[str], path: Path, lineno: int) -> list[float]:
    try:
        return [float(t) for t in tokens]
    except ValueError:
        raise LandmarkError(
            f"{path}, line {lineno}: expected numbers, found {' '.join(tokens)!r}.",
            remedy="Remove or fix that line; only one optional header line is allowed in a table.",
        ) from None


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _lines(text: str) -> list[tuple[int, str]]:
    return [
        (n, ln.strip())
        for n, ln in enumerate(text.splitlines(), 1)
        if ln.strip() and not ln.lstrip().startswith("#")
    ]


def detect_format(path: Path, text: str) -> str:
    """``fcsv``, ``mrk.json``, ``transformix``, ``elastix`` or ``table``, from extension then content."""
    name = path.name.lower()
    if name.endswith(".fcsv"):
        return "fcsv"
    if name.endswith(".json"):
        return "mrk.json"
    if "OutputPoint" in text:
        return "transformix"
    lines = _lines(text)
    if lines and lines[0][1].lower() in ("point", "index"):
        return "elastix"
    return "table"


# ------------------------------------------------------------------------------------------ readers
def parse_table(path: Path, text: str) -> RawPoints:
    """Comma/semicolon/whitespace separated rows; an optional header naming ``x,y,z`` (and ``label``)."""
    lines = _lines(text)
    if not lines:
        raise LandmarkError(
            f"{path} holds no points.", remedy="Check that the right file was given."
        )
    first = [t for t in _SPLIT.split(lines[0][1]) if t]
    header = None if all(_is_number(t) for t in first) else [t.lower().strip("\"'") for t in first]
    rows = lines[1:] if header else lines
    cols, label_col = None, None
    if header:
        named = [c for c in ("x", "y", "z") if c in header]
        if len(named) >= 2:
            cols = [header.index(c) for c in named]
        label_col = next((header.index(c) for c in ("label", "name", "id") if c in header), None)
    coords, labels = [], []
    for lineno, line in rows:
        tokens = [t for t in _SPLIT.split(line) if t]
        if cols is None:
            coords.append(_floats(tokens, path, lineno))
        else:
            if len(tokens) <= max(cols):
                raise LandmarkError(
                    f"{path}, line {lineno}: {len(tokens)} fields, header names {len(header)}."
                )
            coords.append(_floats([tokens[c] for c in cols], path, lineno))
            if label_col is not None and label_col < len(tokens):
                labels.append(tokens[label_col])
    widths = {len(c) for c in coords}
    if len(widths) != 1 or widths.pop() not in (2, 3):
        raise LandmarkError(
            f"{path}: rows have {sorted({len(c) for c in coords})} numeric columns; expected 2 or 3 per row.",
            remedy="Keep only the coordinate columns, or add a header naming them x,y,z (and label).",
        )
    return RawPoints(
        np.asarray(coords), None, "table", labels if len(labels) == len(coords) else None
    )


def parse_elastix(path: Path, text: str) -> RawPoints:
    """elastix/transformix input point file: ``point`` (world LPS mm) or ``index`` (ITK i,j,k), a count, rows."""
    lines = _lines(text)
    kind = lines[0][1].lower()
    try:
        count = int(lines[1][1].split()[0])
    except (IndexError, ValueError):
        raise LandmarkError(
            f"{path}: the second line of an elastix point file must be the number of points.",
            remedy="Write 'point' or 'index', then the count, then one point per line.",
        ) from None
    coords = np.asarray([_floats(_SPLIT.split(ln), path, n) for n, ln in lines[2:]])
    if len(coords) != count:
        raise LandmarkError(
            f"{path} announces {count} points but lists {len(coords)}.",
            remedy="Fix the count line (line 2) or restore the missing rows.",
        )
    if kind == "index":
        return RawPoints(coords, "index", "elastix", axis_order="xyz")
    return RawPoints(coords, "lps", "elastix")


def parse_transformix(path: Path, text: str) -> RawPoints:
    """transformix ``outputpoints.txt``: the ``OutputPoint`` of each line (world LPS mm)."""
    coords = [[float(v) for v in m.group(1).split()] for m in _OUTPUT_POINT.finditer(text)]
    return RawPoints(np.asarray(coords), "lps", "transformix")


def _slicer_space(value: str, path: Path) -> str:
    value = str(value).strip().upper()
    mapping = {"RAS": "ras", "0": "ras", "LPS": "lps", "1": "lps"}
    if value not in mapping:
        raise LandmarkError(
            f"{path}: coordinate system {value!r} is not supported (only RAS and LPS world coordinates).",
            remedy="Re-export the markups from 3D Slicer in RAS or LPS.",
        )
    return mapping[value]


def parse_fcsv(path: Path, text: str) -> RawPoints:
    """3D Slicer ``.fcsv``: RAS unless a ``# CoordinateSystem`` line says LPS."""
    space, columns = None, ["id", "x", "y", "z"] + [""] * 7 + ["label"]
    coords, labels = [], []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("#"):
            key, _, value = line.lstrip("#").partition("=")
            if key.strip().lower() == "coordinatesystem":
                space = _slicer_space(value, path)
            elif key.strip().lower() == "columns":
                columns = [c.strip().lower() for c in value.split(",")]
            continue
        if not line:
            continue
        fields = line.split(",")
        coords.append(_floats([fields[columns.index(c)] for c in ("x", "y", "z")], path, lineno))
        if "label" in columns and columns.index("label") < len(fields):
            labels.append(fields[columns.index("label")])
    return RawPoints(
        np.asarray(coords), space or "ras", "fcsv", labels if len(labels) == len(coords) else None
    )


def parse_mrk_json(path: Path, text: str) -> RawPoints:
    """3D Slicer ``.mrk.json``; each markup's ``coordinateSystem`` (``LPS`` or ``RAS``) is honoured.

    When absent, the Slicer markups schema default ``LPS`` applies.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LandmarkError(
            f"{path} is not valid JSON ({exc}).", remedy="Re-export the markups from 3D Slicer."
        ) from exc
    markups = doc.get("markups", [])
    spaces = {_slicer_space(m.get("coordinateSystem", "LPS"), path) for m in markups}
    common = spaces.pop() if len(spaces) == 1 else "lps"  # mixed systems are all converted to LPS
    coords, labels = [], []
    for markup in markups:
        flip = _slicer_space(markup.get("coordinateSystem", "LPS"), path) != common
        for i, cp in enumerate(markup.get("controlPoints", [])):
            if "position" not in cp:
                raise LandmarkError(
                    f"{path}: control point {i} ({cp.get('label', 'unlabelled')}) has no position.",
                    remedy="Place or delete that point in 3D Slicer, so rows stay paired by order.",
                )
            pos = np.asarray(cp["position"], dtype=np.float64)
            coords.append(ras_lps(pos) if flip else pos)
            labels.append(str(cp.get("label", i)))
    if not coords:
        raise LandmarkError(
            f"{path} holds no control points.",
            remedy="Check that the right markups file was given.",
        )
    return RawPoints(np.asarray(coords), common, "mrk.json", labels)


PARSERS = {
    "table": parse_table,
    "elastix": parse_elastix,
    "transformix": parse_transformix,
    "fcsv": parse_fcsv,
    "mrk.json": parse_mrk_json,
}


def ras_lps(points: np.ndarray) -> np.ndarray:
    """Convert between RAS and LPS (the same flip of the first two axes in both directions)."""
    out = np.array(points, dtype=np.float64)
    out[..., :2] *= -1
    return out


# ------------------------------------------------------------------------------------------ writers
def _row(values: np.ndarray, sep: str) -> str:
    return sep.join(f"{v:.6f}" for v in values)


def format_table(
    coords: np.ndarray, header: list[str] | None, labels: list[str] | None, sep: str
) -> str:
    lines = [sep.join((["label"] if labels else []) + header)] if header else []
    for i, c in enumerate(coords):
        lines.append(sep.join(([labels[i]] if labels else []) + [_row(c, sep)]))
    return "\n".join(lines) + "\n"


def format_elastix(coords: np.ndarray, kind: str) -> str:
    return "\n".join([kind, str(len(coords))] + [_row(c, " ") for c in coords]) + "\n"


def format_fcsv(coords_lps: np.ndarray, labels: list[str]) -> str:
    lines = [
        "# Markups fiducial file version = 4.11",
        "# CoordinateSystem = LPS",
        "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID",
    ]
    for i, (c, lab) in enumerate(zip(coords_lps, labels, strict=True)):
        lines.append(f"{i + 1},{_row(c, ',')},0,0,0,1,1,1,0,{lab},,")
    return "\n".join(lines) + "\n"


def format_mrk_json(coords_lps: np.ndarray, labels: list[str]) -> str:
    points = [
        {
            "id": str(i + 1),
            "label": lab,
            "position": [float(v) for v in c],
            "positionStatus": "defined",
        }
        for i, (c, lab) in enumerate(zip(coords_lps, labels, strict=True))
    ]
    doc = {
        "@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/markups-schema-v1.0.3.json#",
        "markups": [
            {
                "type": "Fiducial",
                "coordinateSystem": "LPS",
                "coordinateUnits": "mm",
                "controlPoints": points,
            }
        ],
    }
    return json.dumps(doc, indent=2) + "\n"
