"""Streamed SHA-256 checksums of files and folders, for provenance.

Inside :func:`remembering_checksums` (one run), a file is hashed at most once while it stays
unchanged: each hash is kept with the file's identity and stamps (device, inode, size, mtime,
ctime), so the provenance record reuses the checksum computed when the input was read.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from pathlib import Path

_CHUNK = 1 << 20
_KNOWN: ContextVar[dict[Path, tuple[tuple[int, ...], str]] | None] = ContextVar(
    "medfeat_known_sha256", default=None
)


@contextlib.contextmanager
def remembering_checksums() -> Iterator[None]:
    """Within this block, checksums of unchanged files are computed once and then reused."""
    token = _KNOWN.set({})
    try:
        yield
    finally:
        _KNOWN.reset(token)


def _stamp(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def remember_sha256(path: str | os.PathLike, sha256: str, st: os.stat_result) -> None:
    """Keep ``sha256`` as the checksum of ``path`` as it was when ``st`` was taken (before reading)."""
    known = _KNOWN.get()
    if known is not None:
        known[Path(path).resolve()] = (_stamp(st), sha256)


def known_sha256(path: str | os.PathLike) -> str | None:
    """The kept checksum of ``path`` if the file has not changed since, else ``None``."""
    known = _KNOWN.get()
    entry = None if known is None else known.get(Path(path).resolve())
    if entry is None:
        return None
    try:
        unchanged = entry[0] == _stamp(os.stat(path))
    except OSError:
        unchanged = False
    return entry[1] if unchanged else None


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks; of a folder, :func:`sha256_files` of its files."""
    path = Path(path)
    if path.is_dir():
        return sha256_files(p for p in path.rglob("*") if p.is_file())
    if (known := known_sha256(path)) is not None:
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    remember_sha256(path, digest.hexdigest(), st)
    return digest.hexdigest()


def sha256_files(paths: Iterable[str | os.PathLike]) -> str:
    """Hex SHA-256 of the sorted per-file hashes: independent of file names and listing order
    (used for DICOM series, whose slice files may be renamed or listed in any order)."""
    hashes = sorted(sha256_file(p) for p in paths)
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()
