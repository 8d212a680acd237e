"""Read one DICOM series from a folder, after checking that it is complete and evenly sliced.

ITK's series reader gives a series one uniform slice spacing, taken from the first and last slice,
and only prints a warning when slices are missing or unevenly spaced; GDCM silently leaves out a
slice file it cannot parse (e.g. a truncated copy). Both would give wrong geometry with no error, so
before decoding any pixels this module checks that every DICOM file of the folder can be parsed and
that the slice positions (ImagePositionPatient projected on the slice normal) are evenly spaced.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medfeat.errors import InputFileError
from medfeat.io.checksum import sha256_files
from medfeat.io.sitk_bridge import sitk_reason

__all__ = ["list_dicom_series", "read_dicom_series", "check_slice_positions", "SliceInfo"]

#: A slice may lie this fraction of the slice step away from the uniform grid ITK builds (more:
#: a missing slice, which moves its neighbours by at least about half a step, or uneven spacing).
UNEVEN_FRACTION = 0.2
_SPLIT_REMEDY = (
    "Move each series' files into a folder of its own and give that folder as the image path "
    "(a series folder must hold exactly one series)."
)


@dataclass(frozen=True)
class SliceInfo:
    """What a slice file's header says about where the slice lies."""

    file: str
    position_mm: tuple[float, ...] | None  # ImagePositionPatient (0020,0032), LPS mm
    orientation: tuple[float, ...] | None  # ImageOrientationPatient (0020,0037): row then column
    rows: int = 0
    columns: int = 0


@contextlib.contextmanager
def _quiet_itk() -> Iterator[None]:
    """ITK prints its own warnings for what medfeat reports with a clearer message."""
    import SimpleITK as sitk

    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def _numbers(reader: Any, key: str) -> tuple[float, ...] | None:
    if not reader.HasMetaDataKey(key):
        return None
    try:
        values = tuple(float(v) for v in reader.GetMetaData(key).strip().split("\\") if v.strip())
    except ValueError:
        return None
    return values if values and all(np.isfinite(values)) else None


def read_slice_info(path: str) -> SliceInfo:
    """The position header of one slice file; raises ``RuntimeError`` when ITK cannot parse it."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    rows, cols = _numbers(reader, "0028|0010"), _numbers(reader, "0028|0011")
    return SliceInfo(
        str(path),
        _numbers(reader, "0020|0032"),
        _numbers(reader, "0020|0037"),
        int(rows[0]) if rows else 0,
        int(cols[0]) if cols else 0,
    )


def list_dicom_series(folder: Path) -> list[dict]:
    """The DICOM series in ``folder``: ``uid``, ``description``, ``files`` (sorted by position)."""
    import SimpleITK as sitk

    series = []
    with _quiet_itk():
        uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
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


def _looks_like_dicom(path: Path) -> bool:
    """A DICOM Part 10 file: 'DICM' after the 128-byte preamble (DICOMDIR indexes are not slices)."""
    if path.name.upper() == "DICOMDIR":
        return False
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def check_unlisted_files(folder: Path, series: list[dict]) -> None:
    """Refuse a folder holding DICOM files that no series lists because they cannot be parsed.

    GDCM leaves such files (a truncated or corrupt slice) out of every series without a word.
    """
    listed = {Path(f).name for s in series for f in s["files"]}
    broken = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name not in listed):
        if not _looks_like_dicom(path):
            continue
        try:
            read_slice_info(str(path))
        except RuntimeError:
            broken.append(path)
    if broken:
        names = ", ".join(f"{p.name} ({p.stat().st_size} bytes)" for p in broken[:5])
        more = f" and {len(broken) - 5} more" if len(broken) > 5 else ""
        raise InputFileError(
            f"{folder}: {len(broken)} DICOM file(s) cannot be parsed (truncated or corrupt), so no series "
            f"includes them and the series would be read without those slices: {names}{more}.",
            remedy="Copy or export those files again from the source (compare their sizes with the other "
            "slices); if they do not belong to the series, move them out of the folder.",
        )


def _describe_gap(lo: SliceInfo, hi: SliceInfo, p_lo: float, p_hi: float, step: float) -> str:
    missing = round((p_hi - p_lo) / step) - 1
    what = f"about {missing} slice(s) missing" if missing >= 1 else "an uneven step"
    return (
        f"{p_hi - p_lo:.4g} mm between {p_lo:.4g} mm ({Path(lo.file).name}) and {p_hi:.4g} mm "
        f"({Path(hi.file).name}): {what}"
    )


def check_slice_positions(slices: list[SliceInfo], where: str) -> float | None:
    """Check that the slices tile the volume evenly; return the slice step in mm (``None``: unknown).

    Positions are ImagePositionPatient projected on the slice normal (row x column direction). Refuses
    slices of several orientations or sizes, two slices at one position, and any slice further than
    :data:`UNEVEN_FRACTION` of a step from the uniform grid ITK would build (a missing slice, uneven spacing).
    """
    if len(slices) < 2:
        return None
    sizes = {(s.rows, s.columns) for s in slices}
    if len(sizes) > 1:
        raise InputFileError(
            f"{where}: slices have different sizes (rows x columns {sorted(sizes)}).",
            remedy=_SPLIT_REMEDY,
        )
    if any(s.position_mm is None or s.orientation is None for s in slices):
        return None  # no position tags (e.g. secondary capture): nothing to check them against
    orientation = np.asarray(slices[0].orientation, dtype=np.float64)
    if len(orientation) != 6 or any(len(s.position_mm) != 3 for s in slices):
        return None  # malformed tags: ITK decides (and fails) on its own
    tilted = next(
        (
            s
            for s in slices
            if len(s.orientation) != 6 or not np.allclose(s.orientation, orientation, atol=1e-3)
        ),
        None,
    )
    if tilted is not None:
        raise InputFileError(
            f"{where}: slices have different orientations ({Path(slices[0].file).name}: "
            f"{slices[0].orientation}, {Path(tilted.file).name}: {tilted.orientation}), so they do not "
            "stack into one volume.",
            remedy=_SPLIT_REMEDY,
        )
    normal = np.cross(orientation[:3], orientation[3:])
    heights = np.asarray([np.dot(s.position_mm, normal) for s in slices])
    order = np.argsort(heights, kind="stable")
    ordered, heights = [slices[i] for i in order], heights[order]
    steps = np.diff(heights)
    same = np.flatnonzero(steps < 1e-3)
    if same.size:
        a, b = ordered[same[0]], ordered[same[0] + 1]
        raise InputFileError(
            f"{where}: {same.size + 1} or more slices share one position ({heights[same[0]]:.4g} mm along "
            f"the slice normal: {Path(a.file).name} and {Path(b.file).name}); the series holds several "
            "volumes (e.g. time points or echoes) or duplicate files.",
            remedy="Move each volume's files into a folder of its own (or delete the duplicates) and give "
            "that folder as the image path.",
        )
    step = (heights[-1] - heights[0]) / (len(heights) - 1)
    deviation = np.abs(heights - (heights[0] + step * np.arange(len(heights))))
    if deviation.max() <= UNEVEN_FRACTION * step:
        return float(step)
    typical = float(np.median(steps))
    gaps = np.flatnonzero(np.abs(steps - typical) > UNEVEN_FRACTION * typical)
    described = "; ".join(
        _describe_gap(ordered[i], ordered[i + 1], heights[i], heights[i + 1], typical)
        for i in gaps[:3]
    )
    more = f"; and {len(gaps) - 3} more" if len(gaps) > 3 else ""
    raise InputFileError(
        f"{where}: the {len(slices)} slices are not evenly spaced along the slice normal, so the series "
        f"cannot be read with one slice spacing (ITK would spread them at {step:.4g} mm). Most slices are "
        f"{typical:.4g} mm apart, but there are {described}{more}.",
        remedy="Restore the missing slice files (copy or export the whole series again). If the series "
        "really has uneven slices, convert it to NIfTI with a tool that resamples or splits it (e.g. "
        "dcm2niix) and give that file instead.",
    )


def read_dicom_series(folder: Path, series_uid: str | None = None) -> tuple[Any, dict]:
    """Check and read one series of ``folder``; return the SimpleITK image and its ``meta``.

    ``series_uid`` picks one series of a folder holding several (Python API only).
    """
    import SimpleITK as sitk

    from medfeat.io.image_header import check_size

    series = list_dicom_series(folder)
    if not series:
        files = sum(1 for p in folder.iterdir() if p.is_file())
        subdirs = sorted(p.name for p in folder.iterdir() if p.is_dir())
        found = f"{files} files, none a readable DICOM slice" + (
            f"; subfolders: {', '.join(subdirs[:5])}" if subdirs else ""
        )
        raise InputFileError(
            f"{folder} is a folder but holds no readable DICOM series ({found}).",
            remedy="Give the folder that directly holds one series' slice files, or an image file: NIfTI "
            "(.nii, .nii.gz), NRRD (.nrrd) or MetaImage (.mha, .mhd).",
        )
    listing = "; ".join(
        f"UID {s['uid'] or '(none)'} ('{s['description'] or 'no description'}', {len(s['files'])} slices, "
        f"e.g. {Path(s['files'][0]).name})"
        for s in series
    )
    if series_uid is None and len(series) > 1:
        raise InputFileError(
            f"{folder} holds {len(series)} DICOM series: {listing}.", remedy=_SPLIT_REMEDY
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
    check_unlisted_files(folder, series)
    where = f"DICOM series {chosen['uid'] or '(no UID)'} in {folder}"
    try:
        slices = [read_slice_info(f) for f in chosen["files"]]
    except RuntimeError as exc:
        raise InputFileError(
            f"{where}: a slice header cannot be read ({sitk_reason(exc)}).",
            remedy="Copy or export the series again; check that no slice file is truncated.",
        ) from exc
    step = check_slice_positions(slices, where)
    rows, cols = slices[0].rows, slices[0].columns
    if rows and cols:
        check_size(where, (cols, rows, len(slices)), bytes_per_voxel=2)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(chosen["files"])
    try:
        sitk_img = reader.Execute()
    except RuntimeError as exc:
        raise InputFileError(
            f"Could not read {where} ({sitk_reason(exc)}).",
            remedy="Check that no slice file is truncated or corrupt; copy or export the series again.",
        ) from exc
    meta = {
        "sha256": sha256_files(chosen["files"]),
        "format": "dicom",
        "series_uid": chosen["uid"],
        "series_description": chosen["description"],
        "num_files": len(chosen["files"]),
        "slice_step_mm": step,
    }
    return sitk_img, meta
