"""The original ConvexAdam (``pip install convexAdam``, MIND-SSC features) as a peer, at its defaults.

``convex_adam_pt(fixed, moving)`` takes the images as nibabel arrays in (i, j, k) order and returns a
displacement ``(H, W, D, 3)`` in voxels of that order: fixed voxel ``x`` samples the moving image at
``x + u(x)`` (``shared/reference/PEERS.md``). It assumes isotropic voxels and both images on one
grid shape. It runs in a child Python process so that its output cannot disturb the caller; points
are mapped by sampling ``u`` trilinearly at the fixed points' continuous voxel indices.
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
    missing_python_package,
    prepare_run,
    run_logged,
)

TOOL = "convexadam"
INSTALL_HINT = "pip install -c constraints.txt convexAdam"

_RUNNER = """
import sys, nibabel, numpy, torch
torch.set_num_threads(int(sys.argv[4]))
from convexAdam.convex_adam_MIND import convex_adam_pt
fixed = nibabel.load(sys.argv[1]).get_fdata().astype('float32')
moving = nibabel.load(sys.argv[2]).get_fdata().astype('float32')
numpy.save(sys.argv[3], convex_adam_pt(fixed, moving).astype('float32'))
"""


def unavailable_reason() -> str | None:
    """Return why ConvexAdam cannot run here, or ``None`` when it can."""
    return missing_python_package("convexAdam", INSTALL_HINT)


def available() -> bool:
    """Whether ConvexAdam can run in this environment."""
    return unavailable_reason() is None


def version() -> str:
    """Version of the installed ``convexAdam`` package."""
    return distribution_version("convexAdam")


def register_and_map(
    fixed_path: str | os.PathLike[str],
    moving_path: str | os.PathLike[str],
    fixed_points_world_lps: np.ndarray,
    workdir: Path,
    threads: int = 2,
) -> PeerResult:
    """Register ``moving`` to ``fixed`` with ConvexAdam's defaults; map fixed points (LPS mm)
    into the moving image's LPS world frame."""
    import SimpleITK as sitk
    from scipy import ndimage

    pts, workdir = prepare_run(unavailable_reason(), fixed_points_world_lps, workdir)
    disp_path = workdir / "displacement_vox.npy"
    argv = [sys.executable, "-c", _RUNNER, fixed_path, moving_path, disp_path, str(int(threads))]
    with Stopwatch() as sw:
        command = run_logged(argv, workdir / "convexadam.log", threads)
        disp = np.load(disp_path)  # (H, W, D, 3), voxels of nibabel's (i, j, k)
        reader = sitk.ImageFileReader()
        grids = []
        for path in (fixed_path, moving_path):
            reader.SetFileName(os.fspath(path))
            reader.ReadImageInformation()
            image = sitk.Image([1] * reader.GetDimension(), sitk.sitkUInt8)
            image.SetSpacing(reader.GetSpacing())
            image.SetOrigin(reader.GetOrigin())
            image.SetDirection(reader.GetDirection())
            grids.append(image)
        fixed, moving = grids  # ITK index (i, j, k) is nibabel's array index
        idx = np.array([fixed.TransformPhysicalPointToContinuousIndex(p.tolist()) for p in pts])
        u = np.stack(
            [
                ndimage.map_coordinates(disp[..., c], idx.T, order=1, mode="nearest")
                for c in range(3)
            ],
            axis=1,
        )
        mapped = np.array(
            [moving.TransformContinuousIndexToPhysicalPoint(q.tolist()) for q in idx + u]
        )
    return PeerResult(
        points_world_lps=mapped,
        seconds=sw.seconds,
        tool=TOOL,
        version=version(),
        command=command,
        extras={},
    )
