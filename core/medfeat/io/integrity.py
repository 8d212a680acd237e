"""One streamed pass over an input file: SHA-256, NIfTI completeness and NIfTI finiteness.

ITK reads a truncated ``.nii``/``.nii.gz`` without complaint (the missing voxels come back as zeros)
and turns stored NaN/Inf voxels into 0, so NIfTI files are checked here, on the bytes as stored:
the gzip stream must be complete, hold the header's ``vox_offset + voxels * bitpix / 8`` bytes,
and floating-point voxels must be finite. The checksum is kept for the run's provenance record
(:func:`medfeat.io.checksum.remember_sha256`), so the file is not read again for it.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medfeat.errors import InputFileError
from medfeat.io.checksum import remember_sha256

_CHUNK = 1 << 20
_MAX_INFLATED = 16 << 20  # bytes inflated at a time (bounds memory for very compressible data)
_HEADER = 540  # bytes that hold a NIfTI-1 (348) or NIfTI-2 (540) header
# NIfTI datatype codes of real floating types (1536 is float128 where numpy has it)
_FLOAT_CODES = {16: "f4", 64: "f8", **({1536: "f16"} if hasattr(np, "float128") else {})}


@dataclass(frozen=True)
class FileScan:
    """What one pass over a file found."""

    sha256: str
    voxels: int = 0  # voxels described by a NIfTI header (0 for other files)
    nonfinite_voxels: int = 0  # stored NaN/Inf voxels of a floating-point NIfTI image


@dataclass(frozen=True)
class _Layout:
    """Where a NIfTI file's voxels lie in its (uncompressed) byte stream."""

    data_start: int
    data_end: int  # the bytes the file must hold
    voxels: int
    dtype: np.dtype | None  # floating voxel type to check for NaN/Inf; None for other types


def _nifti_layout(header: bytes) -> _Layout | None:
    """The voxel layout of a NIfTI-1/2 header, or ``None`` when the header is not NIfTI."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", header[70:74])
            vox_offset = int(struct.unpack(endian + "f", header[108:112])[0])
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            dims = struct.unpack(endian + "8q", header[16:80])
            datatype, bitpix = struct.unpack(endian + "2h", header[12:16])
            vox_offset = struct.unpack(endian + "q", header[168:176])[0]
            break
    else:
        return None
    n = 1
    for d in dims[1 : 1 + max(0, min(dims[0], 7))]:
        n *= max(int(d), 1)
    start = max(vox_offset, 348)
    code = _FLOAT_CODES.get(datatype)
    dtype = np.dtype(endian + code) if code and np.dtype(code).itemsize * 8 == bitpix else None
    return _Layout(start, start + n * bitpix // 8, n, dtype)


class _NiftiStream:
    """Follows the uncompressed bytes of a NIfTI file: its length and its non-finite voxels."""

    def __init__(self) -> None:
        self.total = 0
        self.layout: _Layout | None = None
        self.nonfinite = 0
        self._pending = bytearray()  # bytes before the header could be parsed
        self._carry = b""  # a partial voxel at the end of the last piece
        self._parsed = False

    def feed(self, data: bytes) -> None:
        if self._parsed:
            self._examine(data, self.total)
        else:
            self._pending += data
            if len(self._pending) >= _HEADER:
                self._parse()
        self.total += len(data)

    def finish(self) -> None:
        if not self._parsed:
            self._parse()

    def _parse(self) -> None:
        self._parsed = True
        self.layout = _nifti_layout(bytes(self._pending[:_HEADER]))
        pending, self._pending = bytes(self._pending), bytearray()
        self._examine(pending, 0)

    def _examine(self, data: bytes, position: int) -> None:
        """Count NaN/Inf voxels among the bytes of ``data`` (starting at ``position``) that are voxels."""
        layout = self.layout
        if layout is None or layout.dtype is None:
            return
        lo = max(layout.data_start, position) - position
        hi = min(layout.data_end, position + len(data)) - position
        if hi <= lo:
            return
        piece = self._carry + data[lo:hi] if self._carry else memoryview(data)[lo:hi]
        whole = len(piece) // layout.dtype.itemsize * layout.dtype.itemsize
        values = np.frombuffer(piece[:whole], dtype=layout.dtype)
        self.nonfinite += int(values.size - np.count_nonzero(np.isfinite(values)))
        self._carry = bytes(piece[whole:])


def _inflated(inflate: Any, chunk: bytes) -> Iterator[bytes]:
    """``chunk`` itself, or its uncompressed bytes in pieces of at most :data:`_MAX_INFLATED`."""
    if inflate is None:
        yield chunk
        return
    while chunk and not inflate.eof:
        yield inflate.decompress(chunk, _MAX_INFLATED)
        chunk = inflate.unconsumed_tail


def _truncated(path: Path, detail: str) -> InputFileError:
    return InputFileError(
        f"{path} is truncated: {detail}.",
        remedy="The copy is incomplete (interrupted download or write); copy or export the file again.",
    )


def hash_and_check(path: Path) -> FileScan:
    """One streamed pass over ``path``: its SHA-256; for NIfTI also completeness and NaN/Inf count.

    Raises :class:`InputFileError` for a truncated or corrupt NIfTI file. The caller decides what a
    non-zero :attr:`FileScan.nonfinite_voxels` means (ITK would read those voxels as 0).
    """
    name = path.name.lower()
    is_gz, is_nifti = name.endswith(".gz"), name.endswith((".nii", ".nii.gz"))
    digest = hashlib.sha256()
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if is_gz else None
    stream = _NiftiStream() if is_nifti else None
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                for piece in _inflated(inflate, chunk):
                    if stream is not None:
                        stream.feed(piece)
        if inflate is not None and not inflate.eof:
            tail = inflate.flush()  # output zlib still held when the input ran out
            if stream is not None:
                stream.feed(tail)
    except zlib.error as exc:
        raise InputFileError(
            f"{path} is not a valid gzip stream ({exc}); the file is corrupt.",
            remedy="Re-export or re-download the file and check it opens in a viewer such as ITK-SNAP or 3D Slicer.",
        ) from exc
    if inflate is not None and not inflate.eof:
        raise _truncated(path, f"its gzip stream ends early ({st.st_size} bytes on disk)")
    sha = digest.hexdigest()
    if stream is None:
        remember_sha256(path, sha, st)
        return FileScan(sha)
    stream.finish()
    layout = stream.layout
    if layout is not None and stream.total < layout.data_end:
        raise _truncated(
            path,
            f"its NIfTI header describes {layout.data_end} bytes of header and voxels, "
            f"but the file holds only {stream.total}",
        )
    remember_sha256(path, sha, st)
    return FileScan(sha, layout.voxels if layout else 0, stream.nonfinite)
