"""Child-process worker for :mod:`benchmarks.peers.antspy` (runs inside the ANTsPy interpreter).

Kept free of imports from this package so that it can run in an isolated virtual environment
(antspyx pins older numpy/scipy than the project's environment).

Usage::

    python _ants_worker.py FIXED MOVING POINTS_IN_CSV POINTS_OUT_CSV OUT_PREFIX JSON_OPTIONS

``POINTS_*`` are headerless ``x,y,z`` CSV files in LPS world mm. ``JSON_OPTIONS`` holds
``type_of_transform`` and optional ``reg_iterations``. A JSON summary (ANTsPy version,
registration seconds, transform files) is written to ``OUT_PREFIX + "summary.json"``.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(argv: list[str]) -> int:
    """Register, map points with the forward transforms and write them as CSV."""
    # Never let a module next to this script shadow the real ``ants`` package.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    import ants
    import numpy as np
    import pandas as pd

    fixed_path, moving_path, pts_in, pts_out, prefix, options = argv
    opts = json.loads(options)
    kwargs: dict[str, object] = {"type_of_transform": opts["type_of_transform"]}
    if opts.get("reg_iterations"):
        kwargs["reg_iterations"] = tuple(int(v) for v in opts["reg_iterations"])
    t0 = time.perf_counter()
    fixed = ants.image_read(fixed_path)
    moving = ants.image_read(moving_path)
    reg = ants.registration(fixed=fixed, moving=moving, outprefix=prefix, **kwargs)
    t_reg = time.perf_counter() - t0
    pts = np.loadtxt(pts_in, delimiter=",", ndmin=2)
    df = pd.DataFrame(pts, columns=["x", "y", "z"])
    # ANTs point mapping uses the transforms in the image-warping order: fwdtransforms map
    # fixed-space points into moving space (verified against landmarks).
    mapped = ants.apply_transforms_to_points(3, df, reg["fwdtransforms"])
    np.savetxt(pts_out, mapped[["x", "y", "z"]].to_numpy(dtype=np.float64), delimiter=",")
    summary = {
        "version": getattr(ants, "__version__", "unknown"),
        "registration_s": t_reg,
        "fwdtransforms": list(reg["fwdtransforms"]),
    }
    with open(prefix + "summary.json", "w") as fh:
        json.dump(summary, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
