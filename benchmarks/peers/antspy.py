"""ANTs (ANTsPy, ``pip install antspyx``) as a peer registration tool, run out of process.

``antspyx`` pins older numpy/scipy than this project's environment (installing it would downgrade
numpy 2.4 -> 2.3 and scipy 1.17 -> 1.15), so it is expected to live in its own virtual
environment and is always called through a child interpreter running ``_ants_worker.py``.

Interpreter lookup order:

1. ``$MEDFEAT_ANTS_PYTHON`` (path to a Python executable with ``ants`` importable);
2. ``$MEDFEAT_ANTS_VENV/bin/python`` (default venv: ``/tmp/ants-venv``);
3. the current interpreter, if ``ants`` is importable in it.

Pipeline: ``ants.registration(type_of_transform="SyN")`` (affine + SyN, Mattes MI) with
``reg_iterations=(100, 70, 50)`` by default (ANTsPy's own default ``(40, 20, 0)`` skips the full
resolution level and is markedly worse on the lung pairs), then
``ants.apply_transforms_to_points(3, points, fwdtransforms)`` which maps fixed-space LPS points
into moving space.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .common import PeerResult, PeerUnavailableError, Stopwatch, as_points, run_logged, thread_env

TOOL = "ants"
DEFAULT_VENV = "/tmp/ants-venv"
INSTALL_HINT = (
    f"python -m venv {DEFAULT_VENV} && {DEFAULT_VENV}/bin/pip install antspyx "
    "(or set MEDFEAT_ANTS_PYTHON to an interpreter that has antspyx)"
)
_WORKER = Path(__file__).with_name("_ants_worker.py")


def _candidate_pythons() -> list[str]:
    cands: list[str] = []
    env_py = os.environ.get("MEDFEAT_ANTS_PYTHON")
    if env_py:
        cands.append(env_py)
    venv_py = Path(os.environ.get("MEDFEAT_ANTS_VENV", DEFAULT_VENV)) / "bin" / "python"
    if venv_py.is_file():
        cands.append(os.fspath(venv_py))
    if importlib.util.find_spec("ants") is not None:
        cands.append(sys.executable)
    return cands


@functools.lru_cache(maxsize=1)
def _probe() -> tuple[str | None, str, str]:
    """Return ``(python, version, reason)`` for the first interpreter that imports ``ants``."""
    tried = []
    for py in _candidate_pythons():
        try:
            proc = subprocess.run(
                [py, "-c", "import ants; print(getattr(ants, '__version__', 'unknown'))"],
                capture_output=True,
                text=True,
                timeout=300,
                env=thread_env(1),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            tried.append(f"{py}: {exc}")
            continue
        if proc.returncode == 0:
            return py, proc.stdout.strip().splitlines()[-1], ""
        err = (proc.stderr.strip().splitlines() or ["import failed"])[-1]
        tried.append(f"{py}: {err}")
    detail = "; ".join(tried) if tried else "no candidate interpreter"
    return None, "unknown", f"antspyx not importable ({detail}); install: {INSTALL_HINT}"


def unavailable_reason() -> str | None:
    """Return why ANTs cannot run here, or ``None`` when it can."""
    py, _, reason = _probe()
    return None if py else reason


def available() -> bool:
    """Whether an interpreter with ``antspyx`` was found."""
    return unavailable_reason() is None


def version() -> str:
    """ANTsPy version of the interpreter that will be used."""
    return _probe()[1]


def register_and_map(
    fixed_path: str | os.PathLike[str],
    moving_path: str | os.PathLike[str],
    fixed_points_world_lps: np.ndarray,
    workdir: Path,
    threads: int = 2,
    type_of_transform: str = "SyN",
    reg_iterations: Sequence[int] | None = (100, 70, 50),
) -> PeerResult:
    """Register ``moving`` to ``fixed`` with ANTsPy and map fixed points into moving space.

    Args:
        fixed_path: fixed image.
        moving_path: moving image.
        fixed_points_world_lps: ``(N, 3)`` points in the fixed image's LPS world frame (mm).
        workdir: directory for transforms, point files and logs (created if missing).
        threads: ITK threads for the child process.
        type_of_transform: ANTsPy transform preset (``"SyN"``, ``"SyNRA"``, ...).
        reg_iterations: SyN iterations per level, coarse to fine; ``None`` keeps ANTsPy's default.

    Returns:
        ``PeerResult`` with the points mapped into the moving image's LPS world frame.
    """
    py, ver, reason = _probe()
    if py is None:
        raise PeerUnavailableError(reason)
    pts = as_points(fixed_points_world_lps)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    pts_in = workdir / "fixed_points.csv"
    pts_out = workdir / "mapped_points.csv"
    prefix = os.fspath(workdir / "ants_")
    np.savetxt(pts_in, pts, delimiter=",", fmt="%.6f")
    options = {
        "type_of_transform": type_of_transform,
        "reg_iterations": list(reg_iterations) if reg_iterations else None,
    }
    argv = [py, _WORKER, fixed_path, moving_path, pts_in, pts_out, prefix, json.dumps(options)]
    with Stopwatch() as sw:
        command = run_logged(argv, workdir / "ants.log", threads)
        mapped = np.loadtxt(pts_out, delimiter=",", ndmin=2).reshape(-1, 3)
    summary = json.loads(Path(prefix + "summary.json").read_text())
    if mapped.shape != pts.shape:
        raise RuntimeError(f"ANTs returned {mapped.shape[0]} points, expected {len(pts)}")
    return PeerResult(
        points_world_lps=mapped,
        seconds=sw.seconds,
        tool=TOOL,
        version=str(summary.get("version", ver)),
        command=command,
        extras={"registration_s": float(summary.get("registration_s", float("nan")))},
    )
