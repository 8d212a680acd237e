"""Loading of the lung 4D-CT landmark pairs and landmark error (TRE) helpers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_CASES",
    "LandmarkCase",
    "default_data_root",
    "landmarks_to_world_lps",
    "load_case",
    "tre",
]

DEFAULT_CASES: tuple[str, ...] = ("case_002", "case_003", "case_004", "case_005")


def default_data_root() -> Path:
    """Shared data folder: ``$MEDFEAT_SHARED_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get("MEDFEAT_SHARED_DATA")
    if env:
        return Path(env)
    repo_root = Path(__file__).resolve().parents[2]
    return repo_root.parent / "shared" / "data"


@dataclass(frozen=True)
class LandmarkCase:
    """One fixed/moving pair with corresponding landmarks in LPS world mm."""

    name: str
    fixed_path: Path
    moving_path: Path
    fixed_points: np.ndarray
    moving_points: np.ndarray


def landmarks_to_world_lps(image_path: Path, rows_kji: np.ndarray) -> np.ndarray:
    """Convert continuous voxel indices in numpy order ``(k, j, i)`` to LPS world points.

    Uses ``TransformContinuousIndexToPhysicalPoint(row[::-1])`` on the image read by SimpleITK,
    which is the convention of the lung4dct landmark files.
    """
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(os.fspath(image_path))
    reader.ReadImageInformation()
    img = sitk.Image([1] * reader.GetDimension(), sitk.sitkUInt8)
    img.SetOrigin(reader.GetOrigin())
    img.SetSpacing(reader.GetSpacing())
    img.SetDirection(reader.GetDirection())
    rows = np.asarray(rows_kji, dtype=np.float64).reshape(-1, 3)
    return np.array(
        [img.TransformContinuousIndexToPhysicalPoint(tuple(r[::-1])) for r in rows],
        dtype=np.float64,
    ).reshape(-1, 3)


def load_case(
    name: str,
    data_root: Path | None = None,
    fixed: str = "T00",
    moving: str = "T50",
) -> LandmarkCase:
    """Load ``lung4dct/<name>`` with ``fixed``/``moving`` phases and their landmarks.

    Raises:
        FileNotFoundError: when the case folder or one of its files is missing.
    """
    root = (data_root or default_data_root()) / "lung4dct" / name
    paths = {
        "fixed": root / f"{fixed}.nii.gz",
        "moving": root / f"{moving}.nii.gz",
        "fixed_lm": root / f"landmarks_{fixed}.txt",
        "moving_lm": root / f"landmarks_{moving}.txt",
    }
    missing = [os.fspath(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"missing lung4dct files: {', '.join(missing)}")
    return LandmarkCase(
        name=name,
        fixed_path=paths["fixed"],
        moving_path=paths["moving"],
        fixed_points=landmarks_to_world_lps(paths["fixed"], np.loadtxt(paths["fixed_lm"])),
        moving_points=landmarks_to_world_lps(paths["moving"], np.loadtxt(paths["moving_lm"])),
    )


def tre(mapped: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Mean and 95th percentile of the point-wise Euclidean distance (mm)."""
    d = np.linalg.norm(np.asarray(mapped, float) - np.asarray(target, float), axis=1)
    return float(d.mean()), float(np.percentile(d, 95))
