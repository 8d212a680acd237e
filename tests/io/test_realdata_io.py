"""Checks against the real data in ../shared/data (skipped when that folder is absent)."""

from pathlib import Path

import numpy as np
import pytest

from medfeat.io import read_image, read_landmarks
from medfeat.metrics import tre

DATA = Path(__file__).parents[2] / ".." / "shared" / "data"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        not DATA.is_dir(),
        reason=f"real data folder {DATA.resolve()} is absent (not in a fresh clone)",
    ),
]


def test_abdomen_ct_dicom_series():
    img = read_image(DATA / "abdomen-ct" / "example_ct_dicom")
    assert img.grid.shape == (20, 512, 512)
    np.testing.assert_allclose(img.grid.spacing[:2], 0.98, atol=0.01)
    assert img.grid.spacing[2] == pytest.approx(2.0, abs=0.05)
    assert img.meta["format"] == "dicom" and img.meta["num_files"] == 20
    assert len(img.meta["sha256"]) == 64


@pytest.mark.parametrize(("case", "mean_mm"), [("case_002", 4.4), ("case_005", 7.5)])
def test_lung4dct_landmarks_zyx(case, mean_mm):
    folder = DATA / "lung4dct" / case
    t00 = read_image(folder / "T00.nii.gz")
    lm00 = read_landmarks(folder / "landmarks_T00.txt", image=t00, axis_order="zyx")
    lm50 = read_landmarks(folder / "landmarks_T50.txt", image=t00, axis_order="zyx")
    assert len(lm00) == 375
    stats = tre(lm50, lm00)
    assert stats["mean"] == pytest.approx(mean_mm, abs=0.05)
    # the documented conversion: world = TransformContinuousIndexToPhysicalPoint(row[::-1])
    import SimpleITK as sitk

    ref = sitk.ReadImage(str(folder / "T00.nii.gz"))
    row = np.loadtxt(folder / "landmarks_T00.txt")[0]
    np.testing.assert_allclose(
        lm00.points[0], ref.TransformContinuousIndexToPhysicalPoint(row[::-1].tolist()), atol=1e-4
    )
