"""The built-in dataset adapters (lung4dct on the real data, when present)."""

import numpy as np
import pytest


@pytest.mark.realdata
def test_lung4dct_adapter_on_real_data(shared_data):
    from medfeat.builtins.datasets import Lung4DCTConfig, Lung4DCTDataset

    cases = list(
        Lung4DCTDataset(
            Lung4DCTConfig(root=shared_data / "lung4dct", cases=["case_002"])
        ).registration_cases()
    )
    case = cases[0]
    assert len(case.fixed_points) == len(case.moving_points) == 375
    d = np.linalg.norm(case.fixed_points.points - case.moving_points.points, axis=1).mean()
    assert d == pytest.approx(4.4, abs=0.05)  # the README's initial landmark distance for case 2
    assert np.allclose(np.diag(case.fixed.grid.direction), [1, 1, -1])
