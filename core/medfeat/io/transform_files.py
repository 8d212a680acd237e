"""Read (and write) spatial transforms of medfeat, ITK/SimpleITK, ANTs and greedy as world LPS mm maps.

Every transform read here is a list of *parts* in the order they are applied to a point (first
part first). A part is one of:

* :class:`~medfeat.geometry.DisplacementField`: ``x -> x + u(x)``, vectors in world LPS mm (medfeat's
  fields with their sidecar, and the ITK vector-image fields that ANTs (``*Warp.nii.gz``) and greedy
  write);
* :class:`AffineMap`: a homogeneous matrix in world LPS mm (ITK ``.tfm``/``.txt``/``.h5``/ANTs
  ``.mat`` affine, Euler, similarity, versor and translation transforms; greedy's text ``.mat``, a 4x4
  RAS matrix, converted to LPS);
* :class:`ItkTransform`: any other ITK transform (a B-spline ``.tfm``, say), kept as SimpleITK holds it.

Direction. ITK-family files (ITK, ANTs, greedy, elastix) store the transform that *resamples*: it maps
a point of the output (fixed) image to the input (moving) image, i.e. ``fixed_to_moving`` in medfeat's
words. Only medfeat's fields state their direction (the sidecar's ``"direction"``); for the others
``mapping`` is ``None`` and ``meta["mapping_source"]`` says it was not stated.

An ITK composite transform (``.h5``) is applied by ITK last-added first; it is flattened here into
point order. elastix ``TransformParameters`` files are not read: transformix turns them into a
displacement field (``transformix -def all``) that medfeat reads.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medfeat.errors import InputFileError
from medfeat.geometry import DisplacementField

__all__ = [
    "AffineMap",
    "ItkTransform",
    "TransformPart",
    "FIELD_SUFFIXES",
    "MATRIX_SUFFIXES",
    "read_transform",
    "write_affine",
    "ras_lps_matrix",
]

FIELD_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")
MATRIX_SUFFIXES = (".tfm", ".txt", ".h5", ".hdf5", ".hdf", ".mat")
_AFFINE_NAMES = (
    "Affine",
    "Euler",
    "Similarity",
    "Versor",
    "Translation",
    "Scale",
    "Rigid",
    "MatrixOffset",
    "CenteredAffine",
)


@dataclass
class AffineMap:
    """A homogeneous ``(ndim+1, ndim+1)`` matrix mapping world LPS mm points: ``y = A[:n,:n] x + A[:n,n]``.

    ``mapping`` is ``fixed_to_moving``/``moving_to_fixed`` when the source says so, else ``None``.
    """

    matrix: np.ndarray
    mapping: str | None = None
    meta: dict = field(default_factory=dict)

    @property
    def ndim(self) -> int:
        return self.matrix.shape[0] - 1

    def transform_points(self, points: np.ndarray) -> np.ndarray:
        pts = np.asarray(points, dtype=np.float64)
        return pts @ self.matrix[:-1, :-1].T + self.matrix[:-1, -1]

    def to_sitk(self) -> Any:
        import SimpleITK as sitk

        t = sitk.AffineTransform(self.ndim)
        t.SetMatrix(tuple(float(v) for v in self.matrix[:-1, :-1].ravel()))
        t.SetTranslation(tuple(float(v) for v in self.matrix[:-1, -1]))
        return t


@dataclass
class ItkTransform:
    """Any other ITK transform (e.g. B-spline), applied through SimpleITK."""

    transform: Any
    ndim: int
    mapping: str | None = None
    meta: dict = field(default_factory=dict)

    def transform_points(self, points: np.ndarray) -> np.ndarray:
        pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
        return np.asarray(
            [self.transform.TransformPoint(tuple(float(v) for v in p)) for p in pts],
            dtype=np.float64,
        ).reshape(pts.shape)

    def to_sitk(self) -> Any:
        return self.transform


TransformPart = DisplacementField | AffineMap | ItkTransform


def ras_lps_matrix(matrix: np.ndarray) -> np.ndarray:
    """Convert a homogeneous world matrix between RAS and LPS (the same flip both ways)."""
    n = matrix.shape[0] - 1
    flip = np.eye(n + 1)
    flip[0, 0] = flip[1, 1] = -1.0
    return flip @ np.asarray(matrix, dtype=np.float64) @ flip


def _suffix(path: Path) -> str:
    return ".nii.gz" if path.name.lower().endswith(".nii.gz") else path.suffix.lower()


def _unreadable(path: Path, reason: str) -> InputFileError:
    return InputFileError(
        f"{path} could not be read as a transform ({reason}).",
        remedy="Pass a medfeat output folder or field, an ITK vector-image displacement field (ANTs, "
        "greedy), an ITK transform file (.tfm, .txt, .h5, ANTs .mat) or a greedy 4x4 text matrix.",
    )


def read_transform(path: str | os.PathLike) -> list[TransformPart]:
    """The parts of the transform stored in ``path``, in the order they are applied to a point."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputFileError(
            f"Transform file {path} does not exist"
            + (" (it is a folder)." if path.is_dir() else "."),
            remedy="Check the path; a medfeat output folder is accepted only where a transform is "
            "expected (medfeat apply --transform), not as a file.",
        )
    suffix = _suffix(path)
    if suffix in FIELD_SUFFIXES:
        return [_read_field(path)]
    text = _text_head(path)
    if text is not None and "(Transform " in text:
        raise InputFileError(
            f"{path} is an elastix TransformParameters file, which medfeat does not interpret.",
            remedy="Run 'transformix -tp FILE -def all -out DIR' and pass the deformationField it "
            "writes (an ITK displacement field, fixed to moving).",
        )
    if text is not None and not text.lstrip().startswith("#Insight"):
        matrix = _numeric_matrix(text)
        if matrix is not None:
            return [
                AffineMap(
                    ras_lps_matrix(matrix),
                    None,
                    {"path": str(path), "format": "greedy RAS matrix", "mapping_source": "assumed"},
                )
            ]
    if suffix not in MATRIX_SUFFIXES:
        raise _unreadable(path, f"unknown extension {suffix or '(none)'}")
    import SimpleITK as sitk

    try:
        transform = sitk.ReadTransform(str(path))
    except RuntimeError as exc:
        raise _unreadable(path, _sitk_reason(exc)) from None
    meta = {"path": str(path), "format": "ITK transform", "mapping_source": "assumed"}
    return _flatten(transform, meta)


def _sitk_reason(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    lines = [ln.replace("sitk::ERROR:", "").strip() for ln in lines if "Exception thrown" not in ln]
    return " ".join(lines)[:300] or type(exc).__name__


def _text_head(path: Path, limit: int = 65536) -> str | None:
    """The start of the file as text, or ``None`` when it is binary (HDF5, MATLAB)."""
    head = path.open("rb").read(limit)
    if b"\0" in head:
        return None
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _numeric_matrix(text: str) -> np.ndarray | None:
    """A 3x3 or 4x4 matrix of plain numbers (greedy/c3d), else ``None``."""
    rows = [
        ln.split() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]
    try:
        values = np.asarray([[float(v) for v in r] for r in rows], dtype=np.float64)
    except ValueError:
        return None
    if values.ndim != 2 or values.shape not in ((3, 3), (4, 4)):
        return None
    if not np.allclose(values[-1], np.eye(values.shape[0])[-1]):
        return None
    return values


def _read_field(path: Path) -> DisplacementField:
    from medfeat.io.fields import read_displacement_field, sidecar_path

    sidecar = sidecar_path(path)
    stated = False
    if sidecar.is_file():
        try:
            stated = "direction" in json.loads(sidecar.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputFileError(
                f"The sidecar {sidecar} of {path.name} is not valid JSON.",
                remedy="Restore it from the run's output, or delete it to read the field as a plain "
                "ITK field (then medfeat cannot check its direction).",
            ) from None
    field_ = read_displacement_field(path)
    field_.meta["mapping_source"] = "sidecar" if stated else "assumed"
    if not stated:
        field_.meta["format"] = "ITK displacement field"
    return field_


def _flatten(transform: Any, meta: dict) -> list[TransformPart]:
    """Parts of an ITK transform in point order (a composite applies its last transform first)."""
    import SimpleITK as sitk

    name = transform.GetName()
    if name == "CompositeTransform":
        comp = sitk.CompositeTransform(transform)
        parts: list[TransformPart] = []
        for i in reversed(range(comp.GetNumberOfTransforms())):
            parts.extend(_flatten(comp.GetNthTransform(i), meta))
        return parts
    if name == "IdentityTransform":
        return []
    ndim = transform.GetDimension()
    if name == "DisplacementFieldTransform":
        from medfeat.io.sitk_bridge import sitk_to_image

        image = sitk_to_image(sitk.DisplacementFieldTransform(transform).GetDisplacementField())
        return [
            DisplacementField(
                image.numpy().astype(np.float64), image.grid, "fixed_to_moving", dict(meta)
            )
        ]
    if any(key in name for key in _AFFINE_NAMES):
        return [AffineMap(_matrix_of(transform, ndim), None, {**meta, "itk_class": name})]
    return [ItkTransform(transform, ndim, None, {**meta, "itk_class": name})]


def _matrix_of(transform: Any, ndim: int) -> np.ndarray:
    """The homogeneous matrix of an affine-type ITK transform, from the images of the unit points."""
    origin = np.asarray(transform.TransformPoint((0.0,) * ndim))
    m = np.eye(ndim + 1)
    for a in range(ndim):
        unit = tuple(1.0 if b == a else 0.0 for b in range(ndim))
        m[:ndim, a] = np.asarray(transform.TransformPoint(unit)) - origin
    m[:ndim, ndim] = origin
    return m


def write_affine(matrix: np.ndarray, path: str | os.PathLike, fmt: str | None = None) -> Path:
    """Write a world LPS homogeneous matrix as an ITK transform file (``fmt="itk"``: ``.tfm``,
    ``.txt``, ``.h5``) or as greedy's 4x4 RAS text matrix (``fmt="greedy"``; default for ``.mat``)."""
    from medfeat.io.atomic import atomic_path, atomic_write_text

    path = Path(path).expanduser()
    matrix = np.asarray(matrix, dtype=np.float64)
    fmt = fmt or ("greedy" if path.suffix.lower() == ".mat" else "itk")
    if fmt == "greedy":
        rows = ras_lps_matrix(matrix)
        return atomic_write_text(
            path, "\n".join(" ".join(f"{v:.12g}" for v in r) for r in rows) + "\n"
        )
    if fmt != "itk":
        raise InputFileError(f"Unknown affine format {fmt!r}.", remedy="Use 'itk' or 'greedy'.")
    import SimpleITK as sitk

    with atomic_path(path) as tmp:
        sitk.WriteTransform(AffineMap(matrix).to_sitk(), str(tmp))
    return path
