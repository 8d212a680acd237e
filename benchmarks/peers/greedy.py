"""PICSL greedy (``pip install picsl-greedy``) as a peer registration tool.

Pipeline (settings from ``shared/reference/PEERS.md``):

1. affine: ``-a -dof 12 -m NMI -ia-image-centers -n 100x50x10``
2. deformable: ``-m NCC 2x2x2 -n 100x50x10 -it affine.mat``
3. compose: ``-rf fixed -rc composed.nii.gz -r warp.nii.gz affine.mat``

The composed field is a displacement field in ITK convention (LPS vectors, defined on the fixed
grid) mapping fixed points into moving space, so points are mapped by sampling it with SimpleITK.
Greedy runs in a child Python process (through its pybind API) so that a crash or its verbose
output cannot disturb the caller.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from .common import (
    PeerResult,
    Stopwatch,
    distribution_version,
    map_points_with_displacement_field,
    missing_python_package,
    prepare_run,
    run_logged,
)

TOOL = "greedy"
INSTALL_HINT = "pip install -c constraints.txt picsl-greedy"

_RUNNER = "import sys, picsl_greedy; picsl_greedy.Greedy3D().execute(sys.argv[1])"


def unavailable_reason() -> str | None:
    """Return why greedy cannot run here, or ``None`` when it can."""
    return missing_python_package("picsl_greedy", INSTALL_HINT)


def available() -> bool:
    """Whether greedy can run in this environment."""
    return unavailable_reason() is None


def version() -> str:
    """Version of the installed ``picsl-greedy`` package."""
    return distribution_version("picsl-greedy")


def _greedy(cmd: str, log: Path, threads: int) -> str:
    """Run one greedy command line in a child interpreter; return it as a shell-like string."""
    run_logged([sys.executable, "-c", _RUNNER, cmd], log, threads)
    return f"greedy {cmd}"


def register_and_map(
    fixed_path: str | os.PathLike[str],
    moving_path: str | os.PathLike[str],
    fixed_points_world_lps: np.ndarray,
    workdir: Path,
    threads: int = 2,
    iterations: str = "100x50x10",
) -> PeerResult:
    """Register ``moving`` to ``fixed`` with greedy and map fixed points into moving space.

    Args:
        fixed_path: fixed image (NIfTI or anything ITK reads).
        moving_path: moving image.
        fixed_points_world_lps: ``(N, 3)`` points in the fixed image's LPS world frame (mm).
        workdir: directory for transforms and logs (created if missing).
        threads: number of threads greedy may use.
        iterations: multi-resolution iteration schedule for both stages.

    Returns:
        ``PeerResult`` with the points mapped into the moving image's LPS world frame.
    """
    pts, workdir = prepare_run(unavailable_reason(), fixed_points_world_lps, workdir)
    fixed, moving = os.fspath(fixed_path), os.fspath(moving_path)
    aff = workdir / "affine.mat"
    warp = workdir / "warp.nii.gz"
    comp = workdir / "composed.nii.gz"
    log = workdir / "greedy.log"
    t = f"-d 3 -threads {int(threads)}"
    commands: list[str] = []
    with Stopwatch() as sw_all:
        with Stopwatch() as sw_aff:
            commands.append(
                _greedy(
                    f"{t} -a -dof 12 -m NMI -ia-image-centers -n {iterations}"
                    f" -i {fixed} {moving} -o {aff}",
                    log,
                    threads,
                )
            )
        with Stopwatch() as sw_def:
            commands.append(
                _greedy(
                    f"{t} -m NCC 2x2x2 -n {iterations} -i {fixed} {moving} -it {aff} -o {warp}",
                    log,
                    threads,
                )
            )
        commands.append(_greedy(f"{t} -rf {fixed} -rc {comp} -r {warp} {aff}", log, threads))
        mapped = map_points_with_displacement_field(comp, pts)
    return PeerResult(
        points_world_lps=mapped,
        seconds=sw_all.seconds,
        tool=TOOL,
        version=version(),
        command="\n".join(commands),
        extras={"affine_s": sw_aff.seconds, "deformable_s": sw_def.seconds},
    )
