"""Dev benchmark: ConvexAdam on MIND-SSC for the DIR-Lab lung 4D-CT pairs (T00 -> T50).

Usage::

    PYTHONPATH=core python benchmarks/dev_lung_convex_adam.py [--cases 2 3 4 5]
        [--set adam_iterations=100 --set smoothness_weight=1.0 ...] [--mind-radius 1 ...]

Prints a per-case table (TRE before/after in mm, p95, % voxels with det J <= 0, seconds) and
the mean. Reads the data from ``../shared/data/lung4dct`` (relative to the repository root) and
exits with a message when it is absent. The data are never copied.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

from medfeat.engine.convex_adam import ConvexAdamConfig, convex_adam
from medfeat.engine.mind import gaussian_smooth, mind_ssc
from medfeat.engine.warp import jacobian_determinant_vox, sample_points

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "lung4dct"


@dataclasses.dataclass(frozen=True)
class FeatureParams:
    """Feature extraction for the benchmark (applied identically to both images)."""

    smoothing_sigma_vox: float = 0.0
    mind_radius: int = 1
    mind_dilation: int = 1
    use_mask: bool = True
    mask_threshold: float = 0.5
    mask_dilation_vox: int = 2


def _parse_value(text: str, current: object) -> object:
    if isinstance(current, bool):
        return text.lower() in ("1", "true", "yes")
    if isinstance(current, tuple | list):
        return tuple(float(v) for v in text.split(",") if v)
    return type(current)(text)


def _override(obj, assignments: list[str]):
    changes = {}
    for item in assignments:
        key, value = item.split("=", 1)
        if not hasattr(obj, key):
            continue
        changes[key] = _parse_value(value, getattr(obj, key))
    if dataclasses.is_dataclass(obj):
        return dataclasses.replace(obj, **changes)
    return type(obj).model_validate({**obj.model_dump(), **changes})


def lung_mask(img: torch.Tensor, threshold: float, dilation_vox: int = 2) -> torch.Tensor:
    """Automatic lung mask from intensities alone: dark voxels (``< threshold``) enclosed by the
    body (largest bright component, holes filled slice by slice along axis 0), vessels filled
    in, dilated by ``dilation_vox`` voxels. Returns ``[1, 1, D, H, W]`` float."""
    from scipy import ndimage

    arr = img[0, 0].numpy()
    bright = arr > threshold
    labels, n = ndimage.label(bright)
    if n == 0:
        return torch.ones_like(img)
    sizes = ndimage.sum(bright, labels, range(1, n + 1))
    body = labels == (int(np.argmax(sizes)) + 1)
    body = np.stack([ndimage.binary_fill_holes(s) for s in body])
    lung = body & ~bright
    lung = ndimage.binary_fill_holes(lung)
    if dilation_vox > 0:
        lung = ndimage.binary_dilation(lung, iterations=dilation_vox)
    return torch.from_numpy(lung.astype(np.float32))[None, None]


def load(case: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    import SimpleITK as sitk

    folder = DATA / f"case_{case:03d}"

    def img(name: str) -> torch.Tensor:
        arr = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / name))).astype(np.float32)
        return torch.from_numpy(arr)[None, None]

    return (
        img("T00.nii.gz"),
        img("T50.nii.gz"),
        np.loadtxt(folder / "landmarks_T00.txt"),
        np.loadtxt(folder / "landmarks_T50.txt"),
    )


def features(img: torch.Tensor, fp: FeatureParams) -> torch.Tensor:
    return mind_ssc(gaussian_smooth(img, fp.smoothing_sigma_vox), fp.mind_radius, fp.mind_dilation)


def run_case(case: int, params: ConvexAdamConfig, fp: FeatureParams, spacing_mm: float = 2.0):
    fixed, moving, lm_fix, lm_mov = load(case)
    t0 = time.perf_counter()
    with torch.no_grad():
        feat_fix = features(fixed, fp)
        feat_mov = features(moving, fp)
    mask = lung_mask(fixed, fp.mask_threshold, fp.mask_dilation_vox) if fp.use_mask else None
    disp, _ = convex_adam(feat_fix, feat_mov, params, mask_fixed=mask, spacing_mm=spacing_mm)
    seconds = time.perf_counter() - t0
    pts = torch.from_numpy(lm_fix).float()
    u = sample_points(disp, pts).double().numpy()
    before = spacing_mm * np.linalg.norm(lm_fix - lm_mov, axis=1)
    after = spacing_mm * np.linalg.norm(lm_fix + u - lm_mov, axis=1)
    det = jacobian_determinant_vox(disp)
    folding = 100.0 * (det <= 0).float().mean().item()
    return before, after, folding, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, nargs="+", default=[2, 3, 4, 5])
    parser.add_argument("--set", action="append", default=[], help="key=value override")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"SKIP: lung 4D-CT data not found at {DATA}")
        return 0
    torch.set_num_threads(args.threads)
    params = _override(ConvexAdamConfig(compute_inverse=False), args.set)
    fp = _override(FeatureParams(), args.set)
    unknown = [
        s
        for s in args.set
        if not (hasattr(params, s.split("=")[0]) or hasattr(fp, s.split("=")[0]))
    ]
    if unknown:
        print(f"unknown parameters: {unknown}", file=sys.stderr)
        return 2
    print(params)
    print(fp)
    header = f"{'case':>6} {'TRE0 mm':>8} {'TRE mm':>8} {'p95 mm':>8} {'fold %':>8} {'sec':>7}"
    print(header)
    rows = []
    for case in args.cases:
        before, after, folding, seconds = run_case(case, params, fp)
        rows.append((before.mean(), after.mean(), np.percentile(after, 95), folding, seconds))
        print(
            f"{case:>6} {before.mean():8.2f} {after.mean():8.2f} {np.percentile(after, 95):8.2f} "
            f"{folding:8.4f} {seconds:7.1f}",
            flush=True,
        )
    mean = np.mean(np.array(rows), axis=0)
    print(f"{'mean':>6} {mean[0]:8.2f} {mean[1]:8.2f} {mean[2]:8.2f} {mean[3]:8.4f} {mean[4]:7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
