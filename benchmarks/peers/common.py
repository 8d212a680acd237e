"""Shared types and helpers for the external ("peer") registration tool wrappers.

Conventions used by every wrapper in this package:

* Points are world coordinates in millimetres in the **LPS / ITK physical** frame, i.e. what
  ``SimpleITK.Image.TransformContinuousIndexToPhysicalPoint`` returns. Tools that work in RAS
  (NiftyReg, nibabel) are converted at the wrapper boundary.
* ``register_and_map`` registers ``moving`` onto ``fixed`` and returns, for every fixed-space
  point ``x``, the corresponding location ``T(x)`` in the moving image (the direction in which a
  resampling transform is defined, and the direction landmark TRE is measured in).
* ``PeerResult.seconds`` is the wall time of the whole tool pipeline (registration, transform
  composition and point mapping), not counting process start-up of this Python interpreter.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "prepare_run",
    "PeerResult",
    "PeerUnavailableError",
    "PeerFailedError",
    "thread_env",
    "run_logged",
    "as_points",
    "Stopwatch",
]


class PeerUnavailableError(RuntimeError):
    """Raised by ``register_and_map`` when the tool is not installed (message = reason)."""


class PeerFailedError(RuntimeError):
    """Raised when an external tool exits with an error; the message names its log file."""


@dataclass(frozen=True)
class PeerResult:
    """Output of one peer registration.

    Attributes:
        points_world_lps: ``(N, 3)`` float64 array, fixed points mapped into moving space (LPS mm).
        seconds: wall time of the tool pipeline (registration + composition + point mapping).
        tool: short tool name, e.g. ``"greedy"``.
        version: tool version string as reported by the tool or its package.
        command: the command lines that were run, one per line (for reproducibility).
        extras: free-form extra information (e.g. per-stage seconds).
    """

    points_world_lps: np.ndarray
    seconds: float
    tool: str
    version: str
    command: str
    extras: Mapping[str, float | str] = field(default_factory=dict)


def as_points(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Validate and return ``points`` as a C-contiguous ``(N, 3)`` float64 array."""
    arr = np.ascontiguousarray(np.asarray(points, dtype=np.float64))
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"expected points of shape (N, 3), got {arr.shape}")
    return arr


def thread_env(threads: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a subprocess limited to ``threads`` worker threads.

    Sets the variables honoured by OpenMP (NiftyReg), ITK (greedy, elastix) and BLAS libraries.
    """
    env = dict(os.environ if base is None else base)
    n = str(max(1, int(threads)))
    for key in (
        "OMP_NUM_THREADS",
        "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS",
        "ITK_DEFAULT_NUMBER_OF_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
    ):
        env[key] = n
    return env


def run_logged(
    argv: Sequence[str | os.PathLike[str]],
    log_path: Path,
    threads: int,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run ``argv`` with stdout+stderr appended to ``log_path``; return the shell-quoted command.

    Raises:
        PeerFailedError: when the process exits with a non-zero status.
    """
    args = [os.fspath(a) for a in argv]
    cmd = shlex.join(args)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as log:
        log.write(f"$ {cmd}\n")
        log.flush()
        proc = subprocess.run(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=thread_env(threads, env),
            check=False,
        )
    if proc.returncode != 0:
        tail = _tail(log_path, 15)
        raise PeerFailedError(
            f"command failed with exit status {proc.returncode}: {cmd}\n"
            f"log: {log_path}\n--- last lines ---\n{tail}"
        )
    return cmd


def _tail(path: Path, n: int) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


class Stopwatch:
    """Context manager measuring wall time in seconds (``.seconds`` after exit)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._t0 = 0.0

    def __enter__(self) -> Stopwatch:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0


def map_points_with_displacement_field(field_path: Path, points_lps: np.ndarray) -> np.ndarray:
    """Map LPS points ``x -> x + u(x)`` through an ITK-convention displacement field file.

    The field must store displacement vectors in LPS physical units (ITK convention, which is what
    greedy, elastix and ANTs write even inside NIfTI files). Interpolation is linear; points
    outside the field's domain get zero displacement.
    """
    import SimpleITK as sitk

    img = sitk.ReadImage(os.fspath(field_path))
    if img.GetNumberOfComponentsPerPixel() != img.GetDimension():
        raise ValueError(
            f"{field_path} is not a {img.GetDimension()}-D displacement field "
            f"({img.GetNumberOfComponentsPerPixel()} components per pixel)"
        )
    tx = sitk.DisplacementFieldTransform(sitk.Cast(img, sitk.sitkVectorFloat64))
    pts = as_points(points_lps)
    return np.array([tx.TransformPoint(tuple(p)) for p in pts], dtype=np.float64).reshape(-1, 3)


def prepare_run(
    unavailable_reason: str | None, points: object, workdir: str | os.PathLike[str]
) -> tuple[np.ndarray, Path]:
    """Common start of every ``register_and_map``: refuse a missing tool, check the points, make ``workdir``."""
    if unavailable_reason is not None:
        raise PeerUnavailableError(unavailable_reason)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    return as_points(points), workdir


def missing_python_package(module: str, install_hint: str) -> str | None:
    """Why a peer shipped as a Python package cannot run (``None`` when ``module`` imports)."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        return f"python package {module!r} not installed (install: {install_hint})"
    return None


def distribution_version(distribution: str) -> str:
    """Installed version of ``distribution``, or ``"unknown"``."""
    import importlib.metadata

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
