"""elastix / transformix command-line tools (Debian ``apt-get install elastix``) as a peer.

Pipeline: ``elastix -p affine.txt -p bspline.txt`` with the *default* affine and B-spline
parameter maps of elastix's ``ParameterObject::GetDefaultParameterMap`` (what SimpleElastix /
itk-elastix use by default: 4 resolutions, adaptive stochastic gradient descent, Mattes MI,
256 iterations, B-spline with bending-energy penalty and 10 mm final grid spacing), then
``transformix -def points.txt`` which maps *fixed-space* points into moving space. Transformix
``point`` files are world coordinates in the ITK (LPS) frame, so no conversion is needed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .common import PeerResult, Stopwatch, as_points, prepare_run, run_logged

TOOL = "elastix"
INSTALL_HINT = "apt-get install -y elastix"

ParameterMap = Mapping[str, Sequence[str] | str]

_COMMON: dict[str, list[str]] = {
    "FixedInternalImagePixelType": ["float"],
    "MovingInternalImagePixelType": ["float"],
    "FixedImageDimension": ["3"],
    "MovingImageDimension": ["3"],
    "UseDirectionCosines": ["true"],
    "FixedImagePyramid": ["FixedSmoothingImagePyramid"],
    "MovingImagePyramid": ["MovingSmoothingImagePyramid"],
    "Interpolator": ["LinearInterpolator"],
    "Optimizer": ["AdaptiveStochasticGradientDescent"],
    "Resampler": ["DefaultResampler"],
    "ResampleInterpolator": ["FinalBSplineInterpolator"],
    "FinalBSplineInterpolationOrder": ["3"],
    "NumberOfResolutions": ["4"],
    "WriteIterationInfo": ["false"],
    "ImageSampler": ["RandomCoordinate"],
    "NumberOfSpatialSamples": ["2048"],
    "CheckNumberOfSamples": ["true"],
    "MaximumNumberOfSamplingAttempts": ["8"],
    "NewSamplesEveryIteration": ["true"],
    "NumberOfSamplesForExactGradient": ["4096"],
    "DefaultPixelValue": ["0"],
    "AutomaticParameterEstimation": ["true"],
    "HowToCombineTransforms": ["Compose"],
    # Registration only needs the transform; skip writing the resampled image.
    "WriteResultImage": ["false"],
    "ResultImageFormat": ["nii"],
}

#: Default affine map (elastix ``GetDefaultParameterMap("affine")``).
AFFINE_MAP: dict[str, list[str]] = {
    **_COMMON,
    "Registration": ["MultiResolutionRegistration"],
    "Transform": ["AffineTransform"],
    "Metric": ["AdvancedMattesMutualInformation"],
    "MaximumNumberOfIterations": ["256"],
    "AutomaticScalesEstimation": ["true"],
}

#: Default B-spline map (elastix ``GetDefaultParameterMap("bspline")``, 4 levels, 10 mm grid).
BSPLINE_MAP: dict[str, list[str]] = {
    **_COMMON,
    "Registration": ["MultiMetricMultiResolutionRegistration"],
    "Transform": ["BSplineTransform"],
    "Metric": ["AdvancedMattesMutualInformation", "TransformBendingEnergyPenalty"],
    "Metric0Weight": ["1.0"],
    "Metric1Weight": ["1.0"],
    "MaximumNumberOfIterations": ["256"],
    "GridSpacingSchedule": [f"{1.41**r:.6f}" for r in (3, 2, 1, 0)],
    "FinalGridSpacingInPhysicalUnits": ["10.000000"],
}


def _format_value(value: str) -> str:
    try:
        float(value)
    except ValueError:
        return f'"{value}"'
    return value


def write_parameter_file(params: ParameterMap, path: Path) -> Path:
    """Write an elastix parameter map in the legacy ``(Key value ...)`` text format."""
    lines = []
    for key, values in params.items():
        vals = [values] if isinstance(values, str) else list(values)
        lines.append(f"({key} {' '.join(_format_value(v) for v in vals)})")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_points_file(points_lps: np.ndarray, path: Path) -> Path:
    """Write a transformix ``point`` file (world coordinates, LPS) for ``points_lps``."""
    pts = as_points(points_lps)
    body = "\n".join(" ".join(f"{c:.6f}" for c in p) for p in pts)
    path.write_text(f"point\n{len(pts)}\n{body}\n")
    return path


_OUTPUT_POINT = re.compile(r"OutputPoint\s*=\s*\[\s*([^\]]+)\]")


def read_output_points(path: Path) -> np.ndarray:
    """Parse ``OutputPoint = [x y z]`` from a transformix ``outputpoints.txt``."""
    rows = []
    for line in path.read_text().splitlines():
        m = _OUTPUT_POINT.search(line)
        if m:
            rows.append([float(v) for v in m.group(1).split()])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def unavailable_reason() -> str | None:
    """Return why elastix cannot run here, or ``None`` when it can."""
    missing = [exe for exe in ("elastix", "transformix") if shutil.which(exe) is None]
    if missing:
        return f"executable(s) {', '.join(missing)} not on PATH (install: {INSTALL_HINT})"
    return None


def available() -> bool:
    """Whether the elastix and transformix executables are available."""
    return unavailable_reason() is None


def version() -> str:
    """Version reported by ``elastix --version``."""
    exe = shutil.which("elastix")
    if exe is None:
        return "unknown"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"version:\s*(\S+)", out)
    return m.group(1) if m else out.strip() or "unknown"


def register_and_map(
    fixed_path: str | os.PathLike[str],
    moving_path: str | os.PathLike[str],
    fixed_points_world_lps: np.ndarray,
    workdir: Path,
    threads: int = 2,
    parameter_maps: Sequence[ParameterMap] = (AFFINE_MAP, BSPLINE_MAP),
) -> PeerResult:
    """Register ``moving`` to ``fixed`` with elastix and map fixed points with transformix.

    Args:
        fixed_path: fixed image.
        moving_path: moving image.
        fixed_points_world_lps: ``(N, 3)`` points in the fixed image's LPS world frame (mm).
        workdir: directory for parameter files, transforms and logs (created if missing).
        threads: value passed to ``-threads`` of both executables.
        parameter_maps: parameter maps run in sequence (default: affine then B-spline).

    Returns:
        ``PeerResult`` with the points mapped into the moving image's LPS world frame.
    """
    pts, workdir = prepare_run(unavailable_reason(), fixed_points_world_lps, workdir)
    out_reg = workdir / "elastix"
    out_pts = workdir / "transformix"
    out_reg.mkdir(parents=True, exist_ok=True)
    out_pts.mkdir(parents=True, exist_ok=True)
    log = workdir / "elastix.log"
    param_args: list[str] = []
    for i, pm in enumerate(parameter_maps):
        param_args += ["-p", os.fspath(write_parameter_file(pm, workdir / f"params.{i}.txt"))]
    points_file = write_points_file(pts, workdir / "fixed_points.txt")
    final_tp = out_reg / f"TransformParameters.{len(parameter_maps) - 1}.txt"
    n = str(int(threads))
    commands = []
    with Stopwatch() as sw_all:
        with Stopwatch() as sw_reg:
            commands.append(
                run_logged(
                    ["elastix", "-f", fixed_path, "-m", moving_path, "-out", out_reg]
                    + param_args
                    + ["-threads", n],
                    log,
                    threads,
                )
            )
        commands.append(
            run_logged(
                ["transformix", "-def", points_file, "-tp", final_tp, "-out", out_pts]
                + ["-threads", n],
                log,
                threads,
            )
        )
        mapped = read_output_points(out_pts / "outputpoints.txt")
    if mapped.shape != pts.shape:
        raise RuntimeError(f"transformix returned {mapped.shape[0]} points, expected {len(pts)}")
    return PeerResult(
        points_world_lps=mapped,
        seconds=sw_all.seconds,
        tool=TOOL,
        version=version(),
        command="\n".join(commands),
        extras={"registration_s": sw_reg.seconds},
    )
