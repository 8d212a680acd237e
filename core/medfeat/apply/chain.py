"""A chain of transforms that maps points one stated way, loaded from files, folders or objects.

A chain maps points of its *source* space to its *target* space: ``fixed_to_moving`` maps a point of
the fixed image to the moving image. Its parts are applied to a point in the order given (first
given, first applied). Images are pulled through that map (resampled onto a source-space grid), points
are pushed (source points to target points).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medfeat.errors import ConfigError, GeometryError, InputFileError
from medfeat.geometry import DisplacementField, Grid
from medfeat.geometry.field import MAPPINGS
from medfeat.io.transform_files import AffineMap, ItkTransform, TransformPart, read_transform

__all__ = [
    "TransformSpec",
    "TransformChain",
    "load_chain",
    "normalise_mapping",
    "opposite",
    "part_mapping",
]


@dataclass(frozen=True)
class TransformSpec:
    """A transform to load: a file or medfeat output folder, used as is or inverted."""

    path: Path
    invert: bool = False


@dataclass
class TransformChain:
    """Parts (already inverted where asked) in point order, all mapping ``mapping``.

    ``source_grid``/``target_grid``: the grids of the images the chain maps from and to, when known
    (from a medfeat run's provenance, else the first field's grid for the source).
    """

    parts: list[TransformPart]
    mapping: str = "fixed_to_moving"
    source_grid: Grid | None = None
    target_grid: Grid | None = None
    sources: list[str] = field(default_factory=list)

    @property
    def ndim(self) -> int:
        for part in self.parts:
            return part.grid.ndim if isinstance(part, DisplacementField) else part.ndim
        return self.source_grid.ndim if self.source_grid is not None else 3

    def transform_points(self, points: np.ndarray, chunk: int = 1_000_000) -> np.ndarray:
        """Source-space world LPS mm points ``[N, ndim]`` -> target-space points.

        Fields are sampled linearly with the border value beyond their grid, as medfeat's
        :meth:`DisplacementField.transform_points` does.
        """
        pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
        if pts.shape[1] != self.ndim:
            raise GeometryError(
                f"Points have {pts.shape[1]} coordinates but the transforms are {self.ndim}D.",
                remedy="Use points and transforms of the same dimension.",
            )
        out = np.empty_like(pts)
        for start in range(0, len(pts), chunk):
            block = pts[start : start + chunk]
            for part in self.parts:
                block = part.transform_points(block)
            out[start : start + chunk] = block
        return out

    def to_sitk(self) -> Any:
        """One SimpleITK transform for resampling (ITK applies a composite's last transform first)."""
        import SimpleITK as sitk

        items = [_part_to_sitk(p) for p in self.parts]
        if not items:
            return sitk.Transform(self.ndim, sitk.sitkIdentity)
        if len(items) == 1:
            return items[0]
        return sitk.CompositeTransform(list(reversed(items)))

    def describe(self) -> str:
        return f"{self.mapping} chain: " + (" then ".join(self.sources) or "identity")


def _part_to_sitk(part: TransformPart) -> Any:
    if isinstance(part, DisplacementField):
        import SimpleITK as sitk

        from medfeat.io.sitk_bridge import field_to_sitk

        return sitk.DisplacementFieldTransform(field_to_sitk(part.numpy(), part.grid))
    return part.to_sitk()


def normalise_mapping(mapping: str) -> str:
    """``fixed-to-moving`` and ``fixed_to_moving`` are the same word."""
    value = str(mapping).strip().lower().replace("-", "_")
    if value not in MAPPINGS:
        raise ConfigError(
            f"Unknown mapping {mapping!r}.",
            remedy="Use fixed_to_moving (fixed points to the moving image; pulls a moving image onto "
            "the fixed grid) or moving_to_fixed (the reverse).",
        )
    return value


def opposite(mapping: str) -> str:
    return MAPPINGS[1] if mapping == MAPPINGS[0] else MAPPINGS[0]


def part_mapping(part: TransformPart) -> str | None:
    """The mapping a part states (a medfeat sidecar, a run's chain file), or ``None``."""
    if isinstance(part, DisplacementField):
        return None if part.meta.get("mapping_source") == "assumed" else part.mapping
    return part.mapping


# ------------------------------------------------------------------------------------ loading
def load_chain(
    transforms: list[Any],
    mapping: str = "fixed_to_moving",
    invert_iterations: int = 20,
) -> TransformChain:
    """Load ``transforms`` (paths, :class:`TransformSpec`, fields, :class:`AffineMap`) as one chain.

    Every part whose direction is stated must map ``mapping`` once inverted where asked; a part that
    maps the other way is refused, naming the file to pass instead.
    """
    from medfeat.apply.invert import invert_part

    mapping = normalise_mapping(mapping)
    if not transforms:
        raise ConfigError(
            "No transform was given.",
            remedy="Pass at least one transform: a medfeat output folder, a field, or a transform file.",
        )
    chain = TransformChain([], mapping)
    for position, item in enumerate(transforms):
        spec = item if isinstance(item, TransformSpec) else None
        if spec is None and isinstance(item, str | os.PathLike):
            spec = TransformSpec(Path(item))
        if spec is not None:
            parts, source_grid, target_grid = _load_spec(spec, mapping)
            label = f"{'inverse of ' if spec.invert else ''}{spec.path}"
            invert = spec.invert
        elif isinstance(item, DisplacementField | AffineMap | ItkTransform):
            parts, source_grid, target_grid = [item], None, None
            label, invert = "<in-memory transform>", False
        else:
            raise ConfigError(
                f"Transform {position + 1} is a {type(item).__name__}; expected a path, a "
                "TransformSpec, a DisplacementField or an AffineMap."
            )
        for part in parts:
            _check_direction(part, invert, mapping, label)
        if invert:
            parts = [invert_part(p, invert_iterations) for p in reversed(parts)]
            source_grid, target_grid = target_grid, source_grid
        for part in parts:
            _set_mapping(part, mapping)
        if position == 0:
            chain.source_grid = source_grid or _first_field_grid(parts)
        chain.target_grid = target_grid
        chain.parts.extend(parts)
        chain.sources.append(label)
    return chain


def _first_field_grid(parts: list[TransformPart]) -> Grid | None:
    if parts and isinstance(parts[0], DisplacementField):
        return parts[0].grid
    return None


def _set_mapping(part: TransformPart, mapping: str) -> None:
    part.mapping = mapping


def _check_direction(part: TransformPart, invert: bool, mapping: str, label: str) -> None:
    stated = part_mapping(part)
    if stated is None:
        return
    effective = opposite(stated) if invert else stated
    if effective == mapping:
        return
    name = Path(str(part.meta.get("path", label))).name
    other = f"field_{mapping}.nii.gz"
    raise GeometryError(
        f"{name} maps {stated} (its sidecar says so){' and is inverted here' if invert else ''}, "
        f"but this chain maps {mapping}. {_direction_rule(mapping)}",
        remedy=f"Pass {other} from the same run instead, or {'drop --invert for' if invert else '--invert'} "
        f"{name}, or state --mapping {effective} if that is the way you meant to map.",
    )


def _direction_rule(mapping: str) -> str:
    src, dst = mapping.split("_to_")
    return (
        f"A {mapping} chain pulls a {dst} image onto the {src} grid and pushes {src} points into "
        f"the {dst} image."
    )


def _load_spec(
    spec: TransformSpec, mapping: str
) -> tuple[list[TransformPart], Grid | None, Grid | None]:
    """Parts of one spec in point order, with the source/target grids it states (if any)."""
    path = Path(spec.path).expanduser()
    if path.is_dir():
        return _load_folder(path, opposite(mapping) if spec.invert else mapping)
    return read_transform(path), None, None


def _load_folder(folder: Path, want: str) -> tuple[list[TransformPart], Grid | None, Grid | None]:
    """The ``want`` mapping of a medfeat case folder: its chain file's whole field, else its field."""
    chain_file = folder / "transform_chain.json"
    if chain_file.is_file():
        try:
            chain = json.loads(chain_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputFileError(
                f"{chain_file} is not valid JSON.", remedy="Restore it from the run's output."
            ) from None
        entry = chain.get(want) if isinstance(chain, dict) else None
        if not entry:
            raise _no_mapping(folder, want, chain_file.name)
        if entry.get("whole"):
            parts = read_transform(folder / entry["whole"])
        else:
            parts = [p for name in entry.get("parts", []) for p in read_transform(folder / name)]
        for part in parts:
            if part_mapping(part) is None:
                part.mapping = want
                part.meta["mapping_source"] = "chain file"
    else:
        path = folder / f"field_{want}.nii.gz"
        if not path.is_file():
            if not (folder / f"field_{opposite(want)}.nii.gz").is_file():
                raise InputFileError(
                    f"{folder} holds no field_*.nii.gz; it is not a medfeat registration case folder.",
                    remedy="Pass a case folder of a medfeat registration output (out/<case>/), or a "
                    "field or transform file.",
                )
            raise _no_mapping(folder, want, path.name)
        parts = read_transform(path)
    src, dst = want.split("_to_")
    grids = _provenance_grids(folder)
    return parts, grids.get(src), grids.get(dst)


def _no_mapping(folder: Path, want: str, name: str) -> InputFileError:
    return InputFileError(
        f"{folder} has no {want} transform ({name} is missing or lists none); the run did not write "
        "that direction (output.write_inverse: false).",
        remedy=f"Pass --invert {folder} to invert its {opposite(want)} field instead, or rerun with "
        "output.write_inverse: true.",
    )


def _provenance_grids(folder: Path) -> dict[str, Grid]:
    """The fixed and moving grids a run recorded for this case (``../provenance.json``), if any."""
    prov = folder.parent / "provenance.json"
    if not prov.is_file():
        return {}
    try:
        case = json.loads(prov.read_text()).get("cases", {}).get(folder.name, {})
        return {
            role: grid_from_dict(case[role]["grid"])
            for role in ("fixed", "moving")
            if isinstance(case.get(role), dict) and "grid" in case[role]
        }
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        return {}


def grid_from_dict(d: dict) -> Grid:
    """The inverse of :meth:`Grid.to_dict`."""
    size = [int(s) for s in d["size_ijk"]]
    n = len(size)
    return Grid(
        tuple(reversed(size)),
        tuple(d["spacing_mm"]),
        tuple(d["origin_mm_lps"]),
        np.asarray(d["direction"], dtype=np.float64).reshape(n, n),
    )
