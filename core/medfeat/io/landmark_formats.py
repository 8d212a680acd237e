"""Parsers and writers for landmark file formats; coordinates come back exactly as the file states them.

Each parser returns :class:`RawPoints`: the numbers, what they are (``lps``/``ras`` world mm, or ``index``
voxel coordinates), and labels. Converting them to world LPS mm is :mod:`medfeat.io.landmarks`' job.
"""

from __future__ import annotations

import json
import re
from collections import Counter
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
    lines: list[int] | None = (
        None  # the file line of each row, for messages (``None``: not line based)
    )

    def where(self, row: int) -> str:
        """``line N`` (or ``point N``) of row ``row``, for messages."""
        return f"line {self.lines[row]}" if self.lines else f"point {row + 1}"


def _floats(tokens: list[str], path: Path, lineno: int) -> list[float]:
    try:
        return [float(t) for t in tokens]
    except ValueError:
        raise LandmarkError(
            f"{path}, line {lineno}: expected numbers, found {' '.join(tokens)!r}.",
            remedy="Remove or fix that line; only one optional header line is allowed in a table.",
        ) from None


def _rows_array(
    rows: list[list[float]], lines: list[int], path: Path, what: str, remedy: str
) -> np.ndarray:
    """Rows of 2 or 3 coordinates each, all alike; else a message naming the first odd line."""
    if not rows:
        return np.zeros((0, 3))
    widths = [len(r) for r in rows]
    usual = Counter(widths).most_common(1)[0][0]  # ties: the first row decides
    odd = next((i for i, w in enumerate(widths) if w != usual or w not in (2, 3)), None)
    if odd is not None:
        counts = ", ".join(f"{n} with {w}" for w, n in sorted(Counter(widths).items()))
        raise LandmarkError(
            f"{path}, line {lines[odd]}: {widths[odd]} {what}, but every point needs the same 2 or 3 "
            f"coordinates (rows: {counts}).",
            remedy=remedy,
        )
    return np.asarray(rows, dtype=np.float64)


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
    if header and not rows:
        raise LandmarkError(
            f"{path} has a header line ({lines[0][1][:80]!r}) but no point rows.",
            remedy="The file was saved before any point was added, or the export stopped early: export "
            "the landmarks again, or give the file that holds them.",
        )
    cols, label_col = None, None
    if header:
        named = [c for c in ("x", "y", "z") if c in header]
        if len(named) >= 2:
            cols = [header.index(c) for c in named]
        label_col = next((header.index(c) for c in ("label", "name", "id") if c in header), None)
    coords, labels, numbers = [], [], []
    for lineno, line in rows:
        tokens = [t for t in _SPLIT.split(line) if t]
        if cols is None:
            coords.append(_floats(tokens, path, lineno))
        else:
            if len(tokens) <= max(cols):
                raise LandmarkError(
                    f"{path}, line {lineno}: {len(tokens)} fields, but the header names {len(header)} "
                    f"({', '.join(header)}).",
                    remedy="Complete or remove that row.",
                )
            coords.append(_floats([tokens[c] for c in cols], path, lineno))
            if label_col is not None and label_col < len(tokens):
                labels.append(tokens[label_col])
        numbers.append(lineno)
    array = _rows_array(
        coords,
        numbers,
        path,
        "numeric columns",
        "Keep only the coordinate columns (2 or 3 per row, the same in every row), or add a header "
        "naming them x,y,z (and label).",
    )
    return RawPoints(
        array, None, "table", labels if len(labels) == len(coords) else None, lines=numbers
    )


def parse_elastix(path: Path, text: str) -> RawPoints:
    """elastix/transformix input point file: ``point`` (world LPS mm) or ``index`` (ITK i,j,k), a count, rows."""
    lines = _lines(text)
    layout = "Write 'point' or 'index', then the number of points, then one point per line."
    kind = lines[0][1].lower() if lines else ""
    if kind not in ("point", "index"):
        raise LandmarkError(
            f"{path}: the first line of an elastix point file must be 'point' or 'index'.",
            remedy=layout,
        )
    try:
        count = int(lines[1][1].split()[0])
    except (IndexError, ValueError):
        raise LandmarkError(
            f"{path}: the second line of an elastix point file must be the number of points.",
            remedy=layout,
        ) from None
    rows = [_floats([t for t in _SPLIT.split(ln) if t], path, n) for n, ln in lines[2:]]
    numbers = [n for n, _ in lines[2:]]
    coords = _rows_array(rows, numbers, path, "coordinates", layout)
    if len(coords) != count:
        raise LandmarkError(
            f"{path} announces {count} points but lists {len(coords)}.",
            remedy="Fix the count line (line 2) or restore the missing rows.",
        )
    if kind == "index":
        return RawPoints(coords, "index", "elastix", axis_order="xyz", lines=numbers)
    return RawPoints(coords, "lps", "elastix", lines=numbers)


def parse_transformix(path: Path, text: str) -> RawPoints:
    """transformix ``outputpoints.txt``: the ``OutputPoint`` of each line (world LPS mm)."""
    rows, numbers = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        found = _OUTPUT_POINT.search(line)
        if found is None:
            continue
        rows.append(_floats(found.group(1).split(), path, lineno))
        numbers.append(lineno)
    coords = _rows_array(
        rows,
        numbers,
        path,
        "OutputPoint coordinates",
        "The file is damaged or was edited: run transformix again to write it.",
    )
    return RawPoints(coords, "lps", "transformix", lines=numbers)


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
    coords, labels, numbers = [], [], []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("#"):
            key, _, value = line.lstrip("#").partition("=")
            if key.strip().lower() == "coordinatesystem":
                space = _slicer_space(value, path)
            elif key.strip().lower() == "columns":
                columns = [c.strip().lower() for c in value.split(",")]
                if not {"x", "y", "z"} <= set(columns):
                    raise LandmarkError(
                        f"{path}, line {lineno}: the columns line names no x, y and z columns.",
                        remedy="Re-export the markups from 3D Slicer as .fcsv (or .mrk.json).",
                    )
            continue
        if not line:
            continue
        fields = line.split(",")
        needed = max(columns.index(c) for c in ("x", "y", "z")) + 1
        if len(fields) < needed:
            raise LandmarkError(
                f"{path}, line {lineno}: {len(fields)} comma-separated fields, but the x, y, z columns "
                f"need at least {needed} ({', '.join(c or '?' for c in columns[:needed])}).",
                remedy="Complete or remove that row, or re-export the markups from 3D Slicer.",
            )
        coords.append(_floats([fields[columns.index(c)] for c in ("x", "y", "z")], path, lineno))
        numbers.append(lineno)
        if "label" in columns and columns.index("label") < len(fields):
            labels.append(fields[columns.index("label")])
    return RawPoints(
        np.asarray(coords, dtype=np.float64).reshape(-1, 3),
        space or "ras",
        "fcsv",
        labels if len(labels) == len(coords) else None,
        lines=numbers,
    )


def _mrk_error(path: Path, problem: str) -> LandmarkError:
    return LandmarkError(
        f"{path} is not a 3D Slicer markups file: {problem}.",
        remedy="Re-export the points from 3D Slicer (Markups module, Export to .mrk.json), whose layout is "
        '{"markups": [{"coordinateSystem": "LPS", "controlPoints": [{"position": [x, y, z]}, ...]}]}.',
    )


def _position(cp: dict, i: int, path: Path) -> np.ndarray:
    where = f"control point {i} ({cp.get('label', 'unlabelled')})"
    if "position" not in cp:
        raise LandmarkError(
            f"{path}: {where} has no position.",
            remedy="Place or delete that point in 3D Slicer, so rows stay paired by order.",
        )
    pos = cp["position"]
    ok = isinstance(pos, list) and len(pos) == 3
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pos)
    if not ok:
        raise LandmarkError(
            f"{path}: the position of {where} is {json.dumps(pos)[:80]}; expected a list of 3 numbers.",
            remedy="Fix that point (3 numbers, not text) or re-export the markups from 3D Slicer.",
        )
    return np.asarray(pos, dtype=np.float64)


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
    if not isinstance(doc, dict):
        raise _mrk_error(path, f"its top level is a JSON {type(doc).__name__}, not an object")
    markups = doc.get("markups", [])
    if not isinstance(markups, list) or not all(isinstance(m, dict) for m in markups):
        raise _mrk_error(path, "'markups' is not a list of objects")
    for m in markups:
        if not isinstance(m.get("controlPoints", []), list) or not all(
            isinstance(cp, dict) for cp in m.get("controlPoints", [])
        ):
            raise _mrk_error(path, "a markup's 'controlPoints' is not a list of objects")
    spaces = {_slicer_space(m.get("coordinateSystem", "LPS"), path) for m in markups}
    common = spaces.pop() if len(spaces) == 1 else "lps"  # mixed systems are all converted to LPS
    coords, labels = [], []
    for markup in markups:
        flip = _slicer_space(markup.get("coordinateSystem", "LPS"), path) != common
        for i, cp in enumerate(markup.get("controlPoints", [])):
            pos = _position(cp, i, path)
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
