"""Sliding-window aggregation: overlapping windows are averaged without bias."""

from __future__ import annotations

import pytest
import torch
from medfeat_bpr_diffusion.tiling import sliding_average, window_starts


def test_window_starts_cover_the_volume_aligned_to_the_stride():
    assert window_starts(32, 16, 0.5, 4) == [0, 8, 16]
    assert window_starts(36, 16, 0.5, 4) == [0, 8, 16, 20]
    assert window_starts(8, 16, 0.5) == [0]


@pytest.mark.parametrize("overlap", [0.0, 0.5, 0.75])
def test_constant_feature_map_is_reconstructed_exactly(overlap):
    shape, window = (12, 24, 20), (8, 8, 8)

    def predict(sl):
        return [torch.full((3, 8, 8, 8), 2.5), torch.full((2, 4, 4, 4), -1.0)]

    fine, coarse = sliding_average(shape, window, overlap, [1, 2], [3, 2], predict, align=2)
    assert fine.shape == (3, *shape) and coarse.shape == (2, 6, 12, 10)
    assert torch.equal(fine, torch.full_like(fine, 2.5))
    assert torch.equal(coarse, torch.full_like(coarse, -1.0))


def test_position_dependent_windows_are_stitched_back_in_place():
    field = torch.arange(12 * 16 * 16, dtype=torch.float32).reshape(1, 12, 16, 16)
    out = sliding_average(
        (12, 16, 16), (4, 8, 8), 0.5, [1], [1], lambda sl: [field[(slice(None), *sl)]], align=2
    )[0]
    assert torch.equal(out, field)
