"""All 375 landmarks of a real lung4dct pair, through the full pipeline path (tiny random networks)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.realdata
@pytest.mark.slow
def test_lung4dct_pair_all_landmarks(shared_data, tiny_config):
    from medfeat_maisi_dift.backbone import MaisiDiftBackbone
    from medfeat_maisi_dift.config import MedDiftMatcherConfig
    from medfeat_maisi_dift.matcher import MedDiftMatcher

    from medfeat.builtins.datasets import Lung4DCTConfig, Lung4DCTDataset

    ds = Lung4DCTDataset(Lung4DCTConfig(root=shared_data / "lung4dct", cases=["case_002"]))
    case = next(ds.registration_cases())
    bb = MaisiDiftBackbone(tiny_config(size_multiple_vox=128), seed=0)
    fa, fb = bb.extract(case.fixed), bb.extract(case.moving)
    # 160x128x160 voxels stretch to 128^3 (round(1.25) = 1): the finest level is 32^3
    assert fa.levels[3].data.shape[1:] == (32, 32, 32)
    m = MedDiftMatcher(MedDiftMatcherConfig(box_half_size_mm=10.0)).match(fa, fb, case.fixed_points)
    pts = m.points.points
    assert pts.shape == (375, 3)
    # every match is a voxel of T50 within the box around its query
    idx = case.moving.grid.world_to_array_index(pts)
    np.testing.assert_allclose(idx, np.round(idx), atol=1e-6)
    assert np.all(np.abs(pts - case.fixed_points.points) <= 10.0 + 1e-6)
