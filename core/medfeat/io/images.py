"""Read and write images (NIfTI, NRRD, MetaImage, DICOM series) without losing their geometry."""

from __future__ import annotations

import contextlib
import difflib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from medfeat.errors import DataError, GeometryError, InputFileError
from medfeat.geometry import Image
from medfeat.io.atomic import atomic_path, check_not_protected
from medfeat.io.checksum import sha256_files
from medfeat.io.integrity import hash_and_check
from medfeat.io.relate import check_geometry_relatable

__all__ = ["check_geometry_relatable", "read_image", "write_image", "SUPPORTED_WRITE_SUFFIXES"]

SUPPORTED_WRITE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")
_FORMATS = "NIfTI (.nii, .nii.gz), NRRD (.nrrd), MetaImage (.mha, .mhd) or a folder holding one DICOM series"


def _suffix(path: Path) -> str:
    return ".nii.gz" if path.name.lower().endswith(".nii.gz") else path.suffix.lower()


def _sitk_reason(exc: Exception) -> str:
    """The informative lines of a SimpleITK exception, without the C++ file/line noise."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    lines = [
        ln.replace("sitk::ERROR:", "").strip()
        for ln in lines
        if not ln.startswith("Exception thrown")
    ]
    return " ".join(lines)[:400] or type(exc).__name__


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

    The file is read once by medfeat (checksum, and for NIfTI completeness and NaN/Inf voxels, in one
    streamed pass) and once decoded by SimpleITK; the checksum is kept for the run's provenance.
    ``meta`` holds ``path``, ``sha256`` (streamed; for DICOM the hash of the sorted slice hashes),
    ``pixel_type`` and ``format``; DICOM adds ``series_uid``, ``series_description``, ``num_files``.
    Vector pixels (e.g. RGB) become channels: ``data`` has shape ``(C, *grid.shape)``.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise _missing(path)
    if path.is_dir():
        sitk_img, meta = _read_dicom_series(path, series_uid)
    else:
        sitk_img, meta = _read_file(path)
    return _to_image(sitk_img, path, meta)


def _read_file(path: Path) -> tuple[Any, dict]:
    """One checked pass over the file (checksum, completeness, NaN/Inf), then ITK decodes it."""
    import SimpleITK as sitk

    try:
        scan = hash_and_check(path)
    except OSError as exc:
        raise InputFileError(
            f"Cannot read {path}: {exc.strerror}.", remedy="Check the file permissions."
        ) from exc
    try:
        sitk_img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputFileError(
            f"Could not read {path} as an image ({_sitk_reason(exc)}).",
            remedy=f"Check the file is complete and is {_FORMATS}; try opening it in ITK-SNAP or 3D Slicer.",
        ) from exc
    if scan.nonfinite_voxels:  # ITK's NIfTI reader turns them into 0 silently
        raise DataError(
            f"{path} contains {scan.nonfinite_voxels} NaN/Inf voxels "
            f"({100.0 * scan.nonfinite_voxels / scan.voxels:.3g} % of the image).",
            remedy="Fix the file, or replace those voxels (e.g. with the background value) before running.",
        )
    return sitk_img, {"sha256": scan.sha256, "format": _suffix(path).lstrip(".") or "unknown"}


def list_dicom_series(folder: Path) -> list[dict]:
    """The DICOM series in ``folder``: ``uid``, ``description``, ``files`` (sorted by position)."""
    import SimpleITK as sitk

    series = []
    # ITK prints "No Series were found" itself; the caller reports that case with a clearer message.
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    for uid in uids:
        files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
        reader = sitk.ImageFileReader()
        reader.SetFileName(files[0])
        description = ""
        with contextlib.suppress(RuntimeError):
            reader.ReadImageInformation()
            if reader.HasMetaDataKey("0008|103e"):
                description = reader.GetMetaData("0008|103e").strip()
        series.append({"uid": uid, "description": description, "files": files})
    return series


def _read_dicom_series(folder: Path, series_uid: str | None) -> tuple[Any, dict]:
    import SimpleITK as sitk

    series = list_dicom_series(folder)
    if not series:
        files = sum(1 for p in folder.iterdir() if p.is_file())
        subdirs = sorted(p.name for p in folder.iterdir() if p.is_dir())
        found = f"{files} files, none DICOM" + (
            f"; subfolders: {', '.join(subdirs[:5])}" if subdirs else ""
        )
        raise InputFileError(
            f"{folder} is a folder but holds no readable DICOM series ({found}).",
            remedy=f"Pass the folder that directly holds one series' slice files, or an image file: {_FORMATS}.",
        )
    listing = "; ".join(
        f"UID {s['uid']} ('{s['description'] or 'no description'}', {len(s['files'])} slices)"
        for s in series
    )
    if series_uid is None and len(series) > 1:
        raise InputFileError(
            f"{folder} holds {len(series)} DICOM series: {listing}.",
            remedy="Choose one with series_uid=<UID> (or move each series into its own folder).",
        )
    chosen = (
        series[0]
        if series_uid is None
        else next((s for s in series if s["uid"] == series_uid), None)
    )
    if chosen is None:
        raise InputFileError(
            f"DICOM series {series_uid!r} is not in {folder}; found: {listing}.",
            remedy="Pass one of the listed UIDs as series_uid.",
        )
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(chosen["files"])
    try:
        sitk_img = reader.Execute()
    except RuntimeError as exc:
        raise InputFileError(
            f"Could not read DICOM series {chosen['uid']} in {folder} ({_sitk_reason(exc)}).",
            remedy="Check that no slice file is truncated or corrupt; re-export the series if needed.",
        ) from exc
    meta = {
        "sha256": sha256_files(chosen["files"]),
        "format": "dicom",
        "series_uid": chosen["uid"],
        "series_description": chosen["description"],
        "num_files": len(chosen["files"]),
    }
    return sitk_img, meta


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
) -> Path:
    """Write ``image`` atomically with its exact geometry; return the path written.

    ``reference``: an image whose grid the output must share (e.g. a segmentation of it); its geometry is
    written verbatim, and a different grid raises :class:`GeometryError`. ``protect``: paths (files or
    folders) of this run's inputs, which are never overwritten. Booleans are written as uint8.
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
        import SimpleITK as sitk

        with atomic_path(path) as tmp:
            sitk.WriteImage(sitk_img, str(tmp), compress and suffix != ".nii")
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
