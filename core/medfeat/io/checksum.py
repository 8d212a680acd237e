"""Streamed SHA-256 checksums of files and folders, for provenance."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks; of a folder, :func:`sha256_files` of its files."""
    path = Path(path)
    if path.is_dir():
        return sha256_files(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_files(paths: Iterable[str | os.PathLike]) -> str:
    """Hex SHA-256 of the sorted per-file hashes: independent of file names and listing order
    (used for DICOM series, whose slice files may be renamed or listed in any order)."""
    hashes = sorted(sha256_file(p) for p in paths)
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()
