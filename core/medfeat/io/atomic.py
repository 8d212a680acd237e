"""Atomic file writes: write to a temporary sibling, then ``os.replace`` it into place.

A reader never sees a half-written file, and a writer that fails leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medfeat.errors import InputFileError


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
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the directory of ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is deleted and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (flushed and fsynced before the rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
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
