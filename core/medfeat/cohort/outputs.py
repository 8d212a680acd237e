"""The output folder of a run: checked before anything is written, locked while the run writes,
cleaned of what interrupted runs left, and removed again when a failed run wrote nothing.

Layout: ``<out>/<case>/`` per case (written in ``<out>/.staging/`` and renamed into place whole),
``metrics.json``, ``provenance.json`` and ``cohort.json`` (the manifest) at the top.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medfeat.errors import InputFileError

STAGING = ".staging"
LOCK = ".medfeat.lock"
MANIFEST = "cohort.json"
#: what a run writes at the top of its output folder (removed by ``output.overwrite=true``)
TOP_LEVEL = (
    "metrics.json",
    "provenance.json",
    MANIFEST,
    "results.json",
    "results.md",
    "report",
)
_REMEDY = "Choose another output folder (--out)."


def config_inputs(resolved: Any, include_data: bool = False) -> list[Path]:
    """Input paths named by the configuration (checkpoints, ...); ``data.*`` ones only when
    ``include_data`` (a cohort protects its cases' own files instead of whole dataset folders)."""
    return [
        Path(p)
        for key, p in resolved.inputs.items()
        if include_data or not (key == "data" or key.startswith("data."))
    ]


def check_output_folder(out_dir: Path) -> None:
    """Refuse an output folder that cannot be created or written, with a clear message: a file
    in its place or above it, or a parent without write permission."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise InputFileError(
                f"Output path {out_dir} exists and is not a folder.", remedy=_REMEDY
            )
        if not os.access(out_dir, os.W_OK | os.X_OK):
            raise InputFileError(
                f"Output folder {out_dir} is not writable.",
                remedy="Choose an output folder you can write to (--out), or fix its permissions.",
            )
        return
    parent = out_dir.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputFileError(
            f"Output folder {out_dir} cannot be created: {parent} is a file, not a folder.",
            remedy=_REMEDY,
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputFileError(
            f"Output folder {out_dir} cannot be created: {parent} is not writable.",
            remedy="Choose an output folder you can write to (--out), or fix its permissions.",
        )


def check_collisions(out_dir: Path, case_ids: Iterable[str], inputs: Iterable[Path]) -> None:
    """Refuse, before anything is written, any output that is or would replace an input: the
    output folder inside an input folder, a case folder (replaced whole) holding an input, or a
    summary file (``metrics.json``, ``provenance.json``, ...) that is an input."""
    out = Path(out_dir).resolve()
    outputs = [out / name for name in (*TOP_LEVEL, STAGING, LOCK)]
    outputs += [out / case for case in case_ids]
    for raw in inputs:
        p = Path(raw).resolve()
        if p == out or p in out.parents:
            raise InputFileError(
                f"The output folder {out_dir} is (or lies inside) {p}, an input of this run.",
                remedy=_REMEDY,
            )
        for target in outputs:
            if p == target or target in p.parents:
                raise InputFileError(
                    f"Refusing to run: the output {target} would replace {p}, an input of this "
                    "run (each case's folder is replaced whole).",
                    remedy=_REMEDY,
                )


def earlier_case_ids(out_dir: Path) -> list[str]:
    """Cases of the run whose manifest or provenance is in ``out_dir`` (none when unreadable)."""
    ids: list[str] = []
    for name in (MANIFEST, "provenance.json"):
        with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
            cases = json.loads((Path(out_dir) / name).read_text()).get("cases") or {}
            ids += [c for c in cases if isinstance(c, str) and c not in ids]
    return ids


def refuse_earlier_run(out_dir: Path, *, overwrite: bool, resume: bool) -> None:
    """Refuse to mix a new run into an earlier one unless asked to (overwrite or resume)."""
    out_dir = Path(out_dir)
    found = [n for n in ("provenance.json", MANIFEST) if (out_dir / n).exists()]
    if found == [MANIFEST] and not _any_done(out_dir / MANIFEST):
        found = []  # a run that finished no case: nothing to lose
    if found and not (overwrite or resume):
        raise InputFileError(
            f"{out_dir} already holds the results of an earlier run ({found[0]} is there).",
            remedy="Choose another --out, pass --resume to finish that run (finished cases are "
            "kept), or set output.overwrite=true to replace it.",
        )


def _any_done(manifest: Path) -> bool:
    try:
        cases = json.loads(manifest.read_text()).get("cases") or {}
        return any(isinstance(e, dict) and e.get("status") == "done" for e in cases.values())
    except (OSError, ValueError, AttributeError):
        return True  # unreadable: assume there is something to protect


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputFolder:
    """A run's hold on its output folder (a context manager).

    On entry: create the folder (remembering which folders it created), take the lock
    (``.medfeat.lock``: refuses a folder another live run writes to; a lock left by a killed
    run is taken over) and delete what interrupted runs left (temporary files, staging folders).
    On exit: remove the staging folder and the lock; when the run failed and the folder is
    empty, remove the folders it created.
    """

    def __init__(self, out_dir: Path, lock: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.lock = lock
        self.created: list[Path] = []
        self._locked = False

    # ------------------------------------------------------------------------ before entry
    def refuse_earlier_run(self, *, overwrite: bool, resume: bool) -> None:
        check_output_folder(self.out_dir)
        refuse_earlier_run(self.out_dir, overwrite=overwrite, resume=resume)

    # ------------------------------------------------------------------------------- hold
    def __enter__(self) -> OutputFolder:
        from medfeat.io.atomic import remove_stale_temporaries

        missing = []
        p = self.out_dir.absolute()
        while not p.exists():
            missing.append(p)
            p = p.parent
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputFileError(
                f"Output folder {self.out_dir} cannot be created ({exc.strerror or exc}).",
                remedy=_REMEDY,
            ) from None
        self.created = missing
        try:
            if self.lock:
                self._take_lock()
                remove_stale_temporaries(self.out_dir)
                shutil.rmtree(self.out_dir / STAGING, ignore_errors=True)
        except BaseException:
            self._remove_if_empty()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        shutil.rmtree(self.out_dir / STAGING, ignore_errors=True)
        if self._locked:
            with contextlib.suppress(OSError):
                (self.out_dir / LOCK).unlink()
            self._locked = False
        if exc_type is not None:
            self._remove_if_empty()

    def _remove_if_empty(self) -> None:
        for folder in self.created:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()

    def _take_lock(self) -> None:
        lock = self.out_dir / LOCK
        me = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex}
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    holder = json.loads(lock.read_text() or "{}")
                except (OSError, ValueError):
                    holder = {}
                same_host = holder.get("host") == me["host"]
                if same_host and isinstance(holder.get("pid"), int) and _pid_alive(holder["pid"]):
                    raise InputFileError(
                        f"Another medfeat run (process {holder['pid']}) is writing to "
                        f"{self.out_dir}.",
                        remedy="Wait for it to finish, or choose another --out.",
                    ) from None
                if holder and not same_host:
                    raise InputFileError(
                        f"{self.out_dir} is locked by a run on {holder.get('host')} "
                        f"(process {holder.get('pid')}).",
                        remedy=f"If that run is gone, delete {lock}; or choose another --out.",
                    ) from None
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()  # left by a killed run on this host
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self._locked = True
            return
        raise InputFileError(f"Could not lock {self.out_dir}.", remedy=_REMEDY)

    # ------------------------------------------------------------------- earlier results
    def remove_earlier_run(self, keep: Iterable[str] = ()) -> list[Path]:
        """Delete what the earlier run in this folder wrote (its case folders and summaries),
        except the case folders in ``keep``; user files it did not write stay."""
        keep = set(keep)
        removed = []
        names = [c for c in earlier_case_ids(self.out_dir) if c not in keep]
        for name in [*names, *TOP_LEVEL]:
            target = self.out_dir / name
            if not _safe_child(self.out_dir, target) or not (
                target.exists() or target.is_symlink()
            ):
                continue
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
            removed.append(target)
        return removed

    def remove_case(self, case_id: str) -> None:
        """Delete a case folder that is about to be rewritten (stale or incomplete)."""
        target = self.out_dir / case_id
        if _safe_child(self.out_dir, target) and target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)


def _safe_child(folder: Path, target: Path) -> bool:
    """Whether ``target`` is a direct child of ``folder`` (a case id never climbs out of it)."""
    return target.parent.resolve() == Path(folder).resolve() and target.name not in ("", ".", "..")
