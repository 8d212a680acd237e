"""One streamed pass over a file: SHA-256 plus a completeness check for NIfTI.

ITK reads a truncated ``.nii``/``.nii.gz`` without complaint (the missing voxels come back as zeros),
so NIfTI files are checked here: the gzip stream must be complete and hold the header's
``vox_offset + voxels * bitpix / 8`` bytes.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

from medfeat.errors import InputFileError

_CHUNK = 1 << 20


def _nifti_expected_bytes(header: bytes) -> int | None:
    """Bytes a NIfTI-1/2 file must hold (header + data), or ``None`` when the header is not NIfTI."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            vox_offset = int(struct.unpack(endian + "f", header[108:112])[0])
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            dims = struct.unpack(endian + "8q", header[16:80])
            bitpix = struct.unpack(endian + "h", header[14:16])[0]
            vox_offset = struct.unpack(endian + "q", header[168:176])[0]
            break
    else:
        return None
    n = 1
    for d in dims[1 : 1 + max(0, min(dims[0], 7))]:
        n *= max(int(d), 1)
    return max(vox_offset, 348) + n * bitpix // 8


def hash_and_check(path: Path) -> str:
    """Streamed SHA-256 of ``path``; for NIfTI files also verify the file is complete.

    Raises :class:`InputFileError` for a truncated or corrupt NIfTI file.
    """
    name = path.name.lower()
    is_gz, is_nifti = name.endswith(".gz"), name.endswith((".nii", ".nii.gz"))
    digest = hashlib.sha256()
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if is_gz else None
    head, total = b"", 0
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                if inflate is not None and not inflate.eof:
                    chunk = inflate.decompress(chunk)
                if is_nifti:
                    if len(head) < 540:
                        head += chunk[: 540 - len(head)]
                    total += len(chunk)
    except zlib.error as exc:
        raise InputFileError(
            f"{path} is not a valid gzip stream ({exc}); the file is corrupt.",
            remedy="Re-export or re-download the file and check it opens in a viewer such as ITK-SNAP or 3D Slicer.",
        ) from exc
    if inflate is not None and not inflate.eof:
        raise InputFileError(
            f"{path} is truncated: its gzip stream ends early ({path.stat().st_size} bytes on disk).",
            remedy="The copy is incomplete (interrupted download or write); copy or export the file again.",
        )
    expected = _nifti_expected_bytes(head) if is_nifti else None
    if expected is not None and total < expected:
        raise InputFileError(
            f"{path} is truncated: its NIfTI header describes {expected} bytes of header and voxels, "
            f"but the file holds only {total}.",
            remedy="The copy is incomplete (interrupted download or write); copy or export the file again.",
        )
    return digest.hexdigest()
