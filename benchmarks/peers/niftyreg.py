"""NiftyReg (``CMAKE_POLICY_VERSION_MINIMUM=3.5 pip install niftyreg``) as a peer tool.

Pipeline: ``reg_aladin`` (symmetric block-matching affine, defaults) -> ``reg_f3d -aff``
(cubic B-spline FFD, defaults: NMI, 5-voxel grid, 3 levels) -> ``reg_transform -def`` which
writes a *deformation* field (absolute positions, not displacements) on the fixed grid that
includes the initial affine.

Coordinate convention (verified empirically on the lung 4D-CT pairs): NiftyReg works in the
NIfTI **RAS** world frame. The deformation field therefore holds RAS positions in the moving
image; LPS input points are flipped to RAS (negate x and y) to find their voxel position in the
field, and the sampled RAS positions are flipped back to LPS.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from .common import PeerResult, PeerUnavailableError, Stopwatch, as_points, prepare_run, run_logged

TOOL = "niftyreg"
INSTALL_HINT = "CMAKE_POLICY_VERSION_MINIMUM=3.5 pip install -c constraints.txt niftyreg"
_EXECUTABLES = ("reg_aladin", "reg_f3d", "reg_transform")
#: Multiply LPS by this to get RAS (and vice versa).
LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])


def _bin_dir() -> Path | None:
    """Directory holding the NiftyReg executables: the pip package's ``bin`` or ``PATH``."""
    spec = importlib.util.find_spec("niftyreg")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            cand = Path(loc) / "bin"
            if all((cand / exe).is_file() for exe in _EXECUTABLES):
                return cand
    found = [shutil.which(exe) for exe in _EXECUTABLES]
    if all(found):
        return Path(str(found[0])).parent
    return None


def _exe(name: str) -> str:
    bin_dir = _bin_dir()
    if bin_dir is None:
        raise PeerUnavailableError(unavailable_reason() or "NiftyReg not found")
    return os.fspath(bin_dir / name)


def unavailable_reason() -> str | None:
    """Return why NiftyReg cannot run here, or ``None`` when it can."""
    if _bin_dir() is None:
        return (
            f"NiftyReg executables {', '.join(_EXECUTABLES)} not found in the 'niftyreg' "
            f"package or on PATH (install: {INSTALL_HINT})"
        )
    return None


def available() -> bool:
    """Whether the NiftyReg executables are available."""
    return unavailable_reason() is None


def version() -> str:
    """Version printed by ``reg_f3d --version``."""
    if _bin_dir() is None:
        return "unknown"
    out = subprocess.run(
        [_exe("reg_f3d"), "--version"], capture_output=True, text=True, check=False
    ).stdout
    m = re.search(r"\d+(\.\d+)+\S*", out)
    return m.group(0) if m else "unknown"


def map_points_with_deformation_field(def_path: Path, points_lps: np.ndarray) -> np.ndarray:
    """Map LPS points through a NiftyReg deformation field (RAS absolute positions).

    The field is read with nibabel (whose affine follows the NIfTI sform/qform rules NiftyReg
    uses) and sampled with trilinear interpolation; points outside the grid are clamped to the
    nearest edge value.
    """
    import nibabel as nib
    from scipy.ndimage import map_coordinates

    img = nib.load(os.fspath(def_path))
    data = np.asarray(img.dataobj, dtype=np.float64)
    if data.ndim != 5 or data.shape[3] != 1 or data.shape[4] != 3:
        raise ValueError(f"unexpected deformation field shape {data.shape} in {def_path}")
    field = data[:, :, :, 0, :]
    pts_ras = as_points(points_lps) * LPS_TO_RAS
    inv = np.linalg.inv(img.affine)
    ijk = pts_ras @ inv[:3, :3].T + inv[:3, 3]
    out_ras = np.stack(
        [map_coordinates(field[..., c], ijk.T, order=1, mode="nearest") for c in range(3)],
        axis=1,
    )
    return out_ras * LPS_TO_RAS


def register_and_map(
    fixed_path: str | os.PathLike[str],
    moving_path: str | os.PathLike[str],
    fixed_points_world_lps: np.ndarray,
    workdir: Path,
    threads: int = 2,
) -> PeerResult:
    """Register ``moving`` to ``fixed`` with reg_aladin + reg_f3d and map fixed points.

    Args:
        fixed_path: fixed (reference) NIfTI image.
        moving_path: moving (floating) NIfTI image.
        fixed_points_world_lps: ``(N, 3)`` points in the fixed image's LPS world frame (mm).
        workdir: directory for transforms, resampled images and logs (created if missing).
        threads: OpenMP threads (``-omp``) for every NiftyReg executable.

    Returns:
        ``PeerResult`` with the points mapped into the moving image's LPS world frame.
    """
    pts, workdir = prepare_run(unavailable_reason(), fixed_points_world_lps, workdir)
    aff = workdir / "affine.txt"
    cpp = workdir / "cpp.nii.gz"
    deff = workdir / "deformation.nii.gz"
    log = workdir / "niftyreg.log"
    omp = ["-omp", str(int(threads))]
    ref_flo = ["-ref", fixed_path, "-flo", moving_path]
    commands = []
    with Stopwatch() as sw_all:
        with Stopwatch() as sw_aff:
            commands.append(
                run_logged(
                    [_exe("reg_aladin"), *ref_flo, "-aff", aff]
                    + ["-res", workdir / "affine_res.nii.gz", *omp],
                    log,
                    threads,
                    cwd=workdir,
                )
            )
        with Stopwatch() as sw_def:
            commands.append(
                run_logged(
                    [_exe("reg_f3d"), *ref_flo, "-aff", aff, "-cpp", cpp]
                    + ["-res", workdir / "f3d_res.nii.gz", *omp],
                    log,
                    threads,
                    cwd=workdir,
                )
            )
        commands.append(
            run_logged(
                [_exe("reg_transform"), "-ref", fixed_path, "-def", cpp, deff, *omp],
                log,
                threads,
                cwd=workdir,
            )
        )
        mapped = map_points_with_deformation_field(deff, pts)
    return PeerResult(
        points_world_lps=mapped,
        seconds=sw_all.seconds,
        tool=TOOL,
        version=version(),
        command="\n".join(commands),
        extras={"affine_s": sw_aff.seconds, "deformable_s": sw_def.seconds},
    )
