import numpy as np
import pytest

from medfeat.errors import LandmarkError
from medfeat.geometry import PointSet
from medfeat.metrics import tre


def test_tre_statistics():
    target = np.zeros((4, 3))
    pred = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    out = tre(PointSet(pred), target)
    assert out["n"] == 4
    assert out["mean"] == pytest.approx(2.0)
    assert out["max"] == pytest.approx(5.0)
    assert out["median"] == pytest.approx(1.5)
    assert out["std"] == pytest.approx(np.std([5, 1, 2, 0]))
    assert out["p25"] <= out["median"] <= out["p75"] <= out["p95"] <= out["max"]


def test_tre_count_and_dimension_mismatch():
    with pytest.raises(LandmarkError, match="counts differ"):
        tre(np.zeros((3, 3)), np.zeros((4, 3)))
    with pytest.raises(LandmarkError, match="2D"):
        tre(np.zeros((3, 3)), np.zeros((3, 2)))
