"""How close a lung 4D-CT TRE is to what the landmarks themselves allow, and where the error lies.

    python benchmarks/lung4dct_error_floor.py --root ../shared/data/lung4dct [--run DIR]

DIR-Lab landmarks were placed on voxel centres of the original scans (about 1.1 mm in-plane,
2.5 mm slices; Castillo et al., Phys. Med. Biol. 2009). The shared copies are resampled to 2 mm,
and the landmark rows keep that lattice. A landmark therefore sits up to half an original voxel
from the anatomical point along each axis, independently in the fixed and the moving scan, so even
a perfect registration shows a TRE. Under the model "each annotation is uniformly distributed
within its original voxel", that floor is the mean length of the difference of two such errors;
this script computes it by Monte Carlo for each case's original voxel size. It is a model figure,
not a measurement: annotators pick the slice where a bifurcation shows best, so real annotation
error is usually a little smaller.

For each case it prints:

* the slice lattice found in the landmark rows (the step along the slice axis in 2 mm voxels;
  2.5 mm slices give 1.25), as a check that the rows keep the original voxel centres;
* the model floor in mm;
* with ``--run DIR`` (a ``medfeat bench`` or ``medfeat run`` output folder of the lung pipeline,
  holding ``<case>/fixed_landmarks_in_moving_world_lps_mm.csv``): the registration's mean TRE,
  its mean absolute error per axis of the 2 mm grid (slice axis first), and its TRE without the
  landmarks whose error exceeds ``--outlier-mm``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: In-plane pixel size of the original DIR-Lab scans (mm), Castillo et al. 2009, Table 1;
#: every case has 2.5 mm slices.
DIRLAB_PIXEL_MM = {
    "case_001": 0.97,
    "case_002": 1.16,
    "case_003": 1.15,
    "case_004": 1.13,
    "case_005": 1.10,
    "case_006": 0.97,
    "case_007": 0.97,
    "case_008": 0.97,
    "case_009": 0.97,
    "case_010": 0.97,
}
DIRLAB_SLICE_MM = 2.5
MAPPED = "fixed_landmarks_in_moving_world_lps_mm.csv"


def quantisation_floor_mm(voxel_mm: tuple[float, float, float], samples: int, seed: int) -> float:
    """Mean TRE of a perfect registration against landmarks each uniformly within its voxel."""
    rng = np.random.default_rng(seed)
    half = np.asarray(voxel_mm) / 2.0
    a = rng.uniform(-half, half, (samples, 3))
    b = rng.uniform(-half, half, (samples, 3))
    return float(np.linalg.norm(a - b, axis=1).mean())


def slice_lattice(rows: np.ndarray) -> float:
    """The smallest step (in 2 mm voxels) that explains the slice coordinates of ``rows``."""
    z = np.unique(np.round(rows[:, 0], 4))
    steps = np.diff(z)
    steps = steps[steps > 1e-3]
    return float(steps.min()) if len(steps) else float("nan")


def case_errors(case_dir: Path, run_case: Path) -> dict[str, np.ndarray]:
    """Per-landmark error vectors (mm) along the 2 mm grid's array axes (k, j, i)."""
    from medfeat.io.images import read_image
    from medfeat.io.landmarks import read_landmarks

    moving = read_image(case_dir / "T50.nii.gz")
    truth_vox = np.loadtxt(case_dir / "landmarks_T50.txt")
    mapped = read_landmarks(run_case / MAPPED, check_inside=False).points
    mapped_vox = moving.grid.world_to_array_index(mapped)
    spacing = np.asarray(moving.grid.spacing_array_order)
    return {"vectors": (mapped_vox - truth_vox) * spacing}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "lung4dct")
    ap.add_argument("--cases", default="case_002,case_003,case_004,case_005")
    ap.add_argument("--run", type=Path, help="a medfeat run/bench output folder of these cases")
    ap.add_argument("--outlier-mm", type=float, default=3.0)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not args.root.is_dir():
        print(f"SKIP: lung 4D-CT data not found at {args.root}")
        return 0
    cases = [c for c in args.cases.split(",") if c]
    header = "| case | slice lattice (2 mm voxels) | model floor mm |"
    rule = "|---|---|---|"
    if args.run:
        header += (
            f" TRE mm | mean abs error k / j / i mm | TRE without errors > {args.outlier_mm:g} mm "
            "(count) |"
        )
        rule += "---|---|---|"
    print(header)
    print(rule)
    floors, tres, trimmed = [], [], []
    for case in cases:
        rows = np.loadtxt(args.root / case / "landmarks_T00.txt")
        pixel = DIRLAB_PIXEL_MM.get(case)
        floor = (
            quantisation_floor_mm((DIRLAB_SLICE_MM, pixel, pixel), args.samples, args.seed)
            if pixel
            else float("nan")
        )
        floors.append(floor)
        line = f"| {case} | {slice_lattice(rows):.3f} | {floor:.3f} |"
        if args.run:
            vec = case_errors(args.root / case, args.run / case)["vectors"]
            err = np.linalg.norm(vec, axis=1)
            keep = err <= args.outlier_mm
            tres.append(err.mean())
            trimmed.append(err[keep].mean())
            per_axis = " / ".join(f"{v:.2f}" for v in np.abs(vec).mean(0))
            line += f" {err.mean():.3f} | {per_axis} | {err[keep].mean():.3f} ({(~keep).sum()}) |"
        print(line)
    line = f"| mean | | {np.mean(floors):.3f} |"
    if args.run:
        line += f" {np.mean(tres):.3f} | | {np.mean(trimmed):.3f} |"
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
