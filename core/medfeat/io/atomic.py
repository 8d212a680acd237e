"""Atomic file writes: write to a temporary sibling, verify it, then ``os.replace`` it into place.

A reader never sees a half-written file, and a writer that fails leaves nothing behind. Before the
rename the temporary file is flushed to disk and checked (not empty; a gzip stream complete; a
NIfTI file as long as its header says), because some writers (ITK's) report a short write on a
full disk without raising. A full disk is one :class:`~medfeat.errors.ResourceError`.

``.nii.gz`` files go through :func:`atomic_gzip_path`: the writer writes the uncompressed file,
which is checked against its header, and medfeat compresses it in one streamed pass that hashes
the compressed bytes as they are written, so the file is neither decoded again to verify it nor
read again for its checksum. By default the deflate stream uses run-length matches only
(``Z_RLE``): float32 displacement fields barely compress (ITK's own writer saves about 12 %), and
this keeps all but 2-3 % of that saving (about 8 % of an image's) for roughly a third of the
compression work of level-1 deflate, which costs about as much as ITK's writer.

Inside :func:`protecting` (one run), every atomic write refuses the run's input paths, so JSON
sidecars and summaries are protected like images.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import json
import math
import os
import re
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from medfeat.errors import InputFileError, ResourceError

_PROTECTED: ContextVar[frozenset[Path]] = ContextVar("medfeat_protected", default=frozenset())
#: ``temp_sibling`` names (``.<name>.<8 random>.tmp<suffix>``) and the MetaImage writer's folders
_TEMP_FILE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\..*)?$")
_TEMP_FOLDER = re.compile(r"^\..+\.mhd\.[A-Za-z0-9_]{8}$")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
#: How :func:`atomic_gzip_path` deflates by default: level 1, run-length matches only.
FAST_GZIP = (1, zlib.Z_RLE)
_CHUNK = 4 << 20


def temp_sibling(path: Path) -> Path:
    """A fresh, unused path next to ``path`` that keeps its full suffix (``.nii.gz``), so writers
    that choose a format by extension still do."""
    suffix = "".join(path.suffixes) if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    return Path(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def protecting(paths: Iterable[str | os.PathLike]) -> Iterator[None]:
    """Within this block, every atomic write refuses ``paths`` (the run's inputs) and what lies
    inside them (see :func:`check_not_protected`)."""
    token = _PROTECTED.set(_PROTECTED.get() | {Path(p).resolve() for p in paths})
    try:
        yield
    finally:
        _PROTECTED.reset(token)


def protected_paths() -> frozenset[Path]:
    """The paths protected by the enclosing :func:`protecting` blocks."""
    return _PROTECTED.get()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the directory of ``path``; rename it onto ``path`` on success,
    after :func:`verify_written` has checked it.

    On an exception the temporary file is deleted and ``path`` is left untouched; a full disk
    (``ENOSPC``, or a file cut short) raises one :class:`ResourceError`.
    """
    with _atomic(path, verify_written) as tmp:
        yield tmp


@contextlib.contextmanager
def atomic_gzip_path(path: str | os.PathLike, level: int | None = None) -> Iterator[Path]:
    """Yield a temporary path for the *uncompressed* file of ``path`` (``x.nii`` for
    ``x.nii.gz``); after the block it is checked (not empty; a NIfTI file as long as its header
    says), gzip-compressed into ``path`` atomically and deleted. ``level``: ``None`` for
    :data:`FAST_GZIP`, else a zlib level 0-9 (0 stores the data uncompressed in the gzip stream).

    The compressed stream is written by medfeat (a short write raises), flushed and its size
    checked, so it is not decoded again; its SHA-256, computed while writing, is remembered for
    the run's provenance (:func:`medfeat.io.checksum.remember_sha256`).
    """
    path = Path(path)
    if not path.name.lower().endswith(".gz") or not (level is None or 0 <= level <= 9):
        raise InputFileError(
            f"Cannot gzip-write {path} at level {level}.",
            remedy="Name the output '<name>.gz' and give a gzip level from 0 to 9.",
        )
    check_not_protected(path, _PROTECTED.get())
    plain = path.with_name(path.name[: -len(".gz")])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = temp_sibling(plain)
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        yield raw
        _check_uncompressed(raw, plain, path)
        with _atomic(path, None) as tmp:
            digest = _gzip_file(raw, tmp, level, path)
        _remember(path, digest)
    except OSError as exc:
        raise _write_error(path, exc) from None
    except BaseException as exc:
        if _mentions_full_disk(exc):
            raise disk_full_error(path) from None
        raise
    finally:
        _remove(raw)


def _check_uncompressed(raw: Path, plain: Path, final: Path) -> None:
    """The uncompressed file a writer left: not empty, and a NIfTI file as long as its header."""
    try:
        size = raw.stat().st_size
        if size == 0:
            raise ShortWrite("the file is empty")
        if plain.name.lower().endswith(".nii"):
            with open(raw, "rb") as fh:
                _check_nifti_length(fh.read(544), size)
    except ShortWrite as exc:
        raise disk_full_error(final, f" or the write was cut short ({exc})") from None


def _gzip_file(src: Path, dst: Path, level: int | None, final: Path) -> str:
    """Compress ``src`` into ``dst`` as one gzip member (no name, time 0: the same bytes for the
    same data), fsync it and check its size; return the SHA-256 of the compressed bytes."""
    level, strategy = FAST_GZIP if level is None else (level, zlib.Z_DEFAULT_STRATEGY)
    deflate = zlib.compressobj(level, zlib.DEFLATED, 31, 8, strategy)  # wbits 31: gzip container
    digest, written = hashlib.sha256(), 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while True:
            chunk = fin.read(_CHUNK)
            out = deflate.compress(chunk) if chunk else deflate.flush()
            if out:
                fout.write(out)
                digest.update(out)
                written += len(out)
            if not chunk:
                break
        fout.flush()
        os.fsync(fout.fileno())
    if dst.stat().st_size != written:
        raise disk_full_error(
            final, f" or the write was cut short ({dst.stat().st_size} of {written} bytes)"
        )
    return digest.hexdigest()


def _remember(path: Path, sha256: str) -> None:
    from medfeat.io.checksum import remember_sha256

    with contextlib.suppress(OSError):
        remember_sha256(path, sha256, os.stat(path))


@contextlib.contextmanager
def _atomic(path: str | os.PathLike, verify: Any) -> Iterator[Path]:
    """:func:`atomic_path` with the check ``verify(tmp, path)`` run before the rename (or none)."""
    path = Path(path)
    check_not_protected(path, _PROTECTED.get())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(path)
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        yield tmp
        if verify is not None:
            verify(tmp, path)
        os.replace(tmp, path)
    except OSError as exc:
        _remove(tmp)
        raise _write_error(path, exc) from None
    except BaseException as exc:
        _remove(tmp)
        if _mentions_full_disk(exc):
            raise disk_full_error(path) from None
        raise


def _remove(tmp: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()


def _mentions_full_disk(exc: BaseException) -> bool:
    """Writers that wrap the OS error in their own (SimpleITK's RuntimeError) keep its text."""
    text = str(exc).lower()
    return isinstance(exc, Exception) and ("no space left" in text or "disk quota" in text)


def disk_full_error(path: Path, detail: str = "") -> ResourceError:
    """The one message of a write that did not fit on the disk (nothing was left under ``path``)."""
    return ResourceError(
        f"Could not write {path}: the disk is full{detail}. Nothing was written under that name.",
        remedy=f"Free space on the disk that holds {path.parent}, or choose another output folder "
        "(--out).",
    )


def _write_error(path: Path, exc: OSError) -> Exception:
    if exc.errno in _DISK_FULL:
        return disk_full_error(path)
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return InputFileError(
            f"Cannot write {path}: permission denied ({exc.strerror or exc}).",
            remedy="Choose an output folder you can write to (--out), or fix its permissions.",
        )
    if exc.errno in (errno.ENOTDIR, errno.EEXIST) and not path.parent.is_dir():
        return InputFileError(
            f"Cannot write {path}: a file stands where its folder {path.parent} should be.",
            remedy="Choose another output folder (--out).",
        )
    return exc


class ShortWrite(OSError):
    """The file on disk is shorter than its own header or stream says."""


def verify_written(tmp: Path, final: Path | None = None) -> None:
    """Flush ``tmp`` to disk and check it is complete before it is renamed onto ``final``: not
    empty; a ``.gz`` stream that decompresses to its end (CRC and length); a NIfTI file at least
    as long as its header's voxel data. Raises :class:`ResourceError` naming ``final``."""
    final = Path(final or tmp)
    try:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # delayed allocation: a full disk may only show here
        finally:
            os.close(fd)
        size = tmp.stat().st_size
        if size == 0:
            raise ShortWrite("the file is empty")
        name = final.name.lower()
        if name.endswith(".gz"):
            head, total = _gunzip_head_and_length(tmp)
            if name.endswith(".nii.gz"):
                _check_nifti_length(head, total)
        elif name.endswith(".nii"):
            with open(tmp, "rb") as fh:
                head = fh.read(544)
            _check_nifti_length(head, size)
    except ShortWrite as exc:
        raise disk_full_error(final, f" or the write was cut short ({exc})") from None


def _gunzip_head_and_length(path: Path) -> tuple[bytes, int]:
    head, total = b"", 0
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                if len(head) < 544:
                    head += chunk[: 544 - len(head)]
                total += len(chunk)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ShortWrite(f"incomplete gzip stream: {exc}") from None
    return head, total


def _check_nifti_length(head: bytes, length: int) -> None:
    """Raise :class:`ShortWrite` when a NIfTI-1/2 file of ``length`` bytes holds fewer voxel bytes
    than its header declares (unknown headers are left alone)."""
    if len(head) < 348:
        raise ShortWrite(f"{length} bytes, shorter than a NIfTI header")
    for endian in "<>":
        if struct.unpack(endian + "i", head[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", head[40:56])
            bitpix = struct.unpack(endian + "h", head[72:74])[0]
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
            break
        if struct.unpack(endian + "i", head[:4])[0] == 540 and len(head) >= 540:
            bitpix = struct.unpack(endian + "h", head[14:16])[0]
            dims = struct.unpack(endian + "8q", head[16:80])
            offset = struct.unpack(endian + "q", head[168:176])[0]
            break
    else:
        return
    if not 1 <= dims[0] <= 7 or bitpix <= 0:
        return
    voxels = math.prod(max(int(d), 1) for d in dims[1 : dims[0] + 1])
    need = max(offset, 348) + voxels * bitpix // 8
    if length < need:
        raise ShortWrite(f"{length} of {need} bytes")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete what interrupted atomic writes (kill -9) left under ``folder``: temporary siblings
    (``.<name>.<random>.tmp...``) and MetaImage staging folders. Returns what was removed.

    Call it only on a folder no other process is writing to (a run holds its output folder's lock).
    """
    removed: list[Path] = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            if _TEMP_FILE.match(name):
                p = Path(dirpath) / name
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
        for name in list(dirnames):
            if _TEMP_FOLDER.match(name):
                p = Path(dirpath) / name
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
                dirnames.remove(name)
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (flushed, fsynced and its size checked before the
    rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            written = fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if written != len(data) or tmp.stat().st_size != len(data):
            raise disk_full_error(
                Path(path),
                f" or the write was cut short ({tmp.stat().st_size} of {len(data)} bytes)",
            )
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode(encoding))


def json_safe(obj: Any) -> Any:
    """``obj`` with non-finite floats (NaN, ±inf: e.g. the Dice of a label absent from both maps)
    replaced by ``None``, so that the JSON is strict (``null``) and any parser reads it."""
    if hasattr(obj, "tolist") and type(obj).__module__ in ("numpy", "torch"):
        obj = obj.tolist()  # numpy/torch scalars and arrays -> Python numbers and lists
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Serialise ``obj`` as strict JSON (NaN/inf -> null) and write it atomically (nothing is
    written if serialising fails)."""
    text = json.dumps(json_safe(obj), indent=indent, sort_keys=False, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def check_not_protected(path: str | os.PathLike, protect: set[Path] | None) -> None:
    """Raise :class:`InputFileError` when ``path`` is, or lies inside, one of the ``protect`` paths
    (the run's inputs). A MetaImage ``.mhd`` also protects its ``.raw``/``.zraw`` data file."""
    target = Path(path).resolve()
    targets = {target}
    if target.suffix.lower() == ".mhd":
        targets |= {target.with_suffix(".raw"), target.with_suffix(".zraw")}
    for p in protect or ():
        p = Path(p).resolve()
        if any(t == p or p in t.parents for t in targets):
            raise InputFileError(
                f"Refusing to write {path}: it is (or lies inside) {p}, an input of this run.",
                remedy="Choose another output path or output folder, so that inputs are never overwritten.",
            )
