"""Read and write images (NIfTI, NRRD, MetaImage, DICOM series) without losing their geometry."""

from __future__ import annotations

import difflib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from medfeat.errors import DataError, GeometryError, InputFileError
from medfeat.geometry import Image
from medfeat.io.atomic import atomic_gzip_path, atomic_path, check_not_protected
from medfeat.io.dicom import list_dicom_series, read_dicom_series
from medfeat.io.image_header import check_header, read_image_header
from medfeat.io.integrity import FileScan, hash_and_check
from medfeat.io.relate import check_geometry_relatable
from medfeat.io.sitk_bridge import sitk_reason

__all__ = [
    "SUPPORTED_WRITE_SUFFIXES",
    "check_geometry_relatable",
    "list_dicom_series",
    "read_image",
    "write_image",
    "write_sitk_image",
]

SUPPORTED_WRITE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")
_FORMATS = "NIfTI (.nii, .nii.gz), NRRD (.nrrd), MetaImage (.mha, .mhd) or a folder holding one DICOM series"


def _suffix(path: Path) -> str:
    return ".nii.gz" if path.name.lower().endswith(".nii.gz") else path.suffix.lower()


def _missing(path: Path) -> InputFileError:
    hint = ""
    if path.parent.is_dir():
        close = difflib.get_close_matches(path.name, [p.name for p in path.parent.iterdir()], n=3)
        hint = f" Similar names in {path.parent}: {', '.join(close)}." if close else ""
    return InputFileError(
        f"Image file {path} does not exist.{hint}",
        remedy=f"Check the path (relative paths are resolved from {Path.cwd()}). Expected {_FORMATS}.",
    )


# ---------------------------------------------------------------------------------------- reading
def read_image(path: str | os.PathLike, series_uid: str | None = None) -> Image:
    """Read an image file or DICOM series folder into an :class:`Image` (world LPS mm geometry).

    The header is checked first (size within :func:`medfeat.io.image_header.max_voxels`, real-valued
    pixels). The file is then read once by medfeat (checksum, and for NIfTI completeness and NaN/Inf
    voxels, in one streamed pass) and once decoded by SimpleITK; the checksum is kept for the run's
    provenance. A DICOM folder must hold one complete, evenly sliced series (:mod:`medfeat.io.dicom`);
    ``series_uid`` picks one series of a folder holding several. ``meta`` holds ``path``, ``sha256``
    (for DICOM the hash of the sorted slice hashes), ``pixel_type`` and ``format``; DICOM adds
    ``series_uid``, ``series_description``, ``num_files``, ``slice_step_mm``.
    Vector pixels (e.g. RGB) become channels: ``data`` has shape ``(C, *grid.shape)``.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise _missing(path)
    if path.is_dir():
        sitk_img, meta = read_dicom_series(path, series_uid)
    else:
        sitk_img, meta = _read_file(path)
    return _to_image(sitk_img, path, meta)


def _read_file(path: Path) -> tuple[Any, dict]:
    """Header checks, one checked pass over the file (checksum, completeness, NaN/Inf), then decoding."""
    import SimpleITK as sitk

    try:
        header = read_image_header(path)
    except InputFileError:
        _scan(path)  # a truncated NIfTI file is reported as such
        raise
    check_header(header)
    scan = _scan(path)
    try:
        sitk_img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputFileError(
            f"Could not read {path} as an image ({sitk_reason(exc)}).",
            remedy=f"Check the file is complete and is {_FORMATS}; try opening it in ITK-SNAP or 3D Slicer.",
        ) from exc
    if scan.nonfinite_voxels:  # ITK's NIfTI reader turns them into 0 silently
        raise DataError(
            f"{path} contains {scan.nonfinite_voxels} NaN/Inf voxels "
            f"({100.0 * scan.nonfinite_voxels / scan.voxels:.3g} % of the image).",
            remedy="Fix the file, or replace those voxels (e.g. with the background value) before running.",
        )
    return sitk_img, {"sha256": scan.sha256, "format": _suffix(path).lstrip(".") or "unknown"}


def _scan(path: Path) -> FileScan:
    try:
        return hash_and_check(path)
    except OSError as exc:
        raise InputFileError(
            f"Cannot read {path}: {exc.strerror}.", remedy="Check the file permissions."
        ) from exc


def _to_image(sitk_img: Any, path: Path, meta: dict) -> Image:
    from medfeat.io.sitk_bridge import sitk_to_image

    ndim, size = sitk_img.GetDimension(), sitk_img.GetSize()
    if ndim not in (2, 3):
        raise DataError(
            f"{path} is a {ndim}D image of size {size}; medfeat works on 2D and 3D images.",
            remedy="Extract one volume first (e.g. one time point or channel, with sitk.Extract or fslroi); "
            "for a displacement field use medfeat.io.read_displacement_field.",
        )
    spacing = np.asarray(sitk_img.GetSpacing())
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise DataError(
            f"{path} has voxel spacing {tuple(spacing)} mm; spacing must be finite and positive.",
            remedy="Fix the header (e.g. pixdim in NIfTI, ElementSpacing in MetaImage) before using the image.",
        )
    if not (
        np.all(np.isfinite(sitk_img.GetOrigin())) and np.all(np.isfinite(sitk_img.GetDirection()))
    ):
        raise DataError(
            f"{path} has a non-finite origin {sitk_img.GetOrigin()} or direction {sitk_img.GetDirection()}.",
            remedy="Fix the image header before using the image.",
        )
    full_meta = {"path": str(path), **meta, "pixel_type": sitk_img.GetPixelIDTypeAsString()}
    try:
        return sitk_to_image(sitk_img, full_meta)
    except GeometryError as exc:
        raise DataError(
            f"{path}: {exc.message}", remedy="Fix the image header before using the image."
        ) from exc


# ---------------------------------------------------------------------------------------- writing
def write_image(
    image: Image,
    path: str | os.PathLike,
    reference: Image | None = None,
    protect: set[Path] | None = None,
    compress: bool = True,
    compression_level: int | None = None,
) -> Path:
    """Write ``image`` atomically with its exact geometry; return the path written.

    ``reference``: an image whose grid the output must share (e.g. a segmentation of it); its geometry is
    written verbatim, and a different grid raises :class:`GeometryError`. ``protect``: paths (files or
    folders) of this run's inputs, which are never overwritten. Booleans are written as uint8.
    ``compression_level``: zlib level (0-9) of ``.nii.gz`` files, ``None`` for the fast default
    (see :func:`write_sitk_image`).
    """
    from medfeat.io.sitk_bridge import image_to_sitk

    path = Path(path).expanduser()
    suffix = _suffix(path)
    if suffix not in SUPPORTED_WRITE_SUFFIXES:
        raise InputFileError(
            f"Cannot write an image to {path}: unsupported extension {suffix or '(none)'}.",
            remedy=f"Use one of {', '.join(SUPPORTED_WRITE_SUFFIXES)}.",
        )
    check_not_protected(path, protect)
    if reference is not None:
        if not image.grid.same_as(reference.grid):
            raise GeometryError(
                f"The image to write lies on {image.grid.describe()}, but its reference {reference.name} lies on "
                f"{reference.grid.describe()}.",
                remedy="Resample it onto the reference grid first (medfeat.io.resample_to_grid).",
            )
        image = Image(image.data, reference.grid, image.meta)
    sitk_img = image_to_sitk(image)
    if suffix == ".mhd":
        _write_mhd(sitk_img, path, compress)
    else:
        write_sitk_image(sitk_img, path, compress, compression_level)
    return path


def write_sitk_image(
    sitk_img: Any, path: Path, compress: bool = True, compression_level: int | None = None
) -> Path:
    """Write a SimpleITK image atomically to a single-file format (not ``.mhd``).

    ``.nii.gz``: ITK writes the plain NIfTI, checked against its header, and medfeat gzips it
    (:func:`medfeat.io.atomic.atomic_gzip_path`: ``compression_level`` ``None`` is its fast
    default, 0-9 a zlib level, 0 when ``compress`` is false) without decoding it again.
    SimpleITK's own NIfTI writer ignores a compression level. Other formats: ITK writes them
    (compressed if ``compress``) and the file is checked.
    """
    import SimpleITK as sitk

    path = Path(path)
    if _suffix(path) == ".nii.gz":
        with atomic_gzip_path(path, compression_level if compress else 0) as raw:
            sitk.WriteImage(sitk_img, str(raw), False)
    else:
        with atomic_path(path) as tmp:
            sitk.WriteImage(sitk_img, str(tmp), compress and _suffix(path) != ".nii")
    return path


def _write_mhd(sitk_img: Any, path: Path, compress: bool) -> None:
    """MetaImage header + data file: write both in a temporary folder, move data first, header last."""
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        sitk.WriteImage(sitk_img, str(tmpdir / path.name), compress)
        for part in sorted(tmpdir.iterdir(), key=lambda p: p.suffix == ".mhd"):
            os.replace(part, path.parent / part.name)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
