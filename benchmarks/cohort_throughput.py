"""Cohort throughput: cases per minute on a generated phantom cohort, run as a plain serial loop
(the pipeline's components called directly), by the cohort engine in-process, and on a local Dask
cluster of 1 and 2 workers; the engine's overhead is the difference with the serial loop.

    python benchmarks/cohort_throughput.py --cases 8 --shape 48 --out /tmp/cohort-bench

Prints a table and writes ``throughput.json`` in ``--out``. Times include each worker's start-up
(imports, building the components) since a cohort pays it once per worker.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

PIPELINE = """kind: registration
data: {{name: csv-pairs, csv: pairs.csv, landmark_axis_order: zyx}}
backbone: {{name: mind-ssc, radius_mm: {spacing}, dilation_mm: {spacing}}}
optimiser: {{name: convex-adam, grid_spacing_mm: {grid}, search_radius_mm: {search}}}
output: {{write_inverse: false}}
"""


def make_cohort(root: Path, n: int, shape: int, spacing: float) -> Path:
    """``n`` breathing-phantom pairs with voxel landmarks, listed in ``pairs.csv``."""
    from medfeat.io.images import write_image
    from medfeat.phantoms import breathing_phantom

    root.mkdir(parents=True, exist_ok=True)
    rows = ["case_id,fixed,moving,fixed_landmarks,moving_landmarks"]
    for i in range(n):
        pair = breathing_phantom((shape,) * 3, spacing, amplitude_mm=8.0, num_vessels=20, seed=i)
        write_image(pair.fixed, root / f"f{i}.nii.gz")
        write_image(pair.moving, root / f"m{i}.nii.gz")
        for name, image, pts in (
            ("f", pair.fixed, pair.fixed_points),
            ("m", pair.moving, pair.moving_points),
        ):
            idx = image.grid.world_to_array_index(pts.points)
            np.savetxt(root / f"{name}{i}.csv", idx, delimiter=",")
        rows.append(f"case{i:03d},f{i}.nii.gz,m{i}.nii.gz,f{i}.csv,m{i}.csv")
    (root / "pairs.csv").write_text("\n".join(rows) + "\n")
    yaml = root / "pipeline.yaml"
    yaml.write_text(PIPELINE.format(spacing=spacing, grid=2 * spacing, search=6 * spacing))
    return yaml


def serial_loop(yaml: Path, out: Path) -> float:
    """The cases one after another, through the pipeline's own per-case steps (no engine)."""
    from medfeat.config.resolve import resolve_pipeline
    from medfeat.config.source import load_yaml
    from medfeat.context import RunContext
    from medfeat.pipelines import registration
    from medfeat.pipelines.runner import Run
    from medfeat.plugins import get_registry
    from medfeat.progress import Progress

    start = time.perf_counter()
    registry = get_registry()
    resolved = resolve_pipeline(load_yaml(yaml), registry)
    context = RunContext(device="cpu", progress=Progress(enabled=False, verbosity=-1))
    run = Run(resolved, registry, context, out)
    dataset = run.build("data")
    parts = registration.Components.build(run)
    for case in dataset.registration_cases():
        registration.process_case(run, parts, case)
    return time.perf_counter() - start


def cohort(yaml: Path, out: Path, workers: int | None) -> float:
    from medfeat.cli.main import main

    start = time.perf_counter()
    args = ["-q", "run", str(yaml), "--out", str(out), "--device", "cpu"]
    args += ["--workers", str(workers)] if workers else []
    if main(args) != 0:
        raise SystemExit(f"the cohort run with workers={workers} failed")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--shape", type=int, default=48, help="phantom size (voxels per axis)")
    parser.add_argument("--spacing-mm", type=float, default=4.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    yaml = make_cohort(args.out / "data", args.cases, args.shape, args.spacing_mm)
    runs = {
        "serial loop (no engine)": serial_loop(yaml, args.out / "serial"),
        "cohort, in-process": cohort(yaml, args.out / "in-process", None),
        "cohort, --workers 1": cohort(yaml, args.out / "workers1", 1),
        "cohort, --workers 2": cohort(yaml, args.out / "workers2", 2),
    }
    base = runs["serial loop (no engine)"]
    table = {
        name: {
            "seconds": round(s, 2),
            "cases_per_minute": round(60 * args.cases / s, 2),
            "overhead_vs_serial_s": round(s - base, 2),
        }
        for name, s in runs.items()
    }
    print(f"{args.cases} cases of {args.shape}^3 voxels at {args.spacing_mm} mm")
    for name, row in table.items():
        print(f"{name:28s} {row['seconds']:8.2f} s {row['cases_per_minute']:8.2f} cases/min "
              f"{row['overhead_vs_serial_s']:+8.2f} s")  # fmt: skip
    (args.out / "throughput.json").write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
