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


@pytest.mark.parametrize("overlap", [0.0, 0.5, 0.75])
def test_central_stitching_reconstructs_constant_and_position_dependent_maps(overlap):
    shape, window = (12, 24, 20), (8, 8, 8)
    field = torch.arange(12 * 24 * 20, dtype=torch.float32).reshape(1, *shape)
    coarse_field = field[:, ::2, ::2, ::2]

    def predict(sl):
        return [
            field[(slice(None), *sl)],
            coarse_field[(slice(None), *[slice(x.start // 2, x.stop // 2) for x in sl])],
        ]

    fine, coarse = sliding_average(shape, window, overlap, [1, 2], [1, 1], predict, 2, "central")
    assert torch.equal(fine, field) and torch.equal(coarse, coarse_field)


def test_central_stitching_takes_each_voxel_from_the_window_with_the_nearest_centre():
    shape, window = (1, 1, 30), (1, 1, 8)
    starts = window_starts(30, 8, 0.5)
    centres = torch.tensor([s + 4.0 for s in starts])

    def predict(sl):  # each window paints its own index
        return [torch.full((1, 1, 1, 8), float(starts.index(sl[2].start)))]

    out = sliding_average(shape, window, 0.5, [1], [1], predict, 1, "central")[0][0, 0, 0]
    voxel_centres = torch.arange(30) + 0.5
    nearest = (voxel_centres[:, None] - centres[None]).abs().argmin(1).float()
    assert torch.equal(out, nearest)
    # averaging, by contrast, mixes the windows where they overlap
    avg = sliding_average(shape, window, 0.5, [1], [1], predict, 1, "average")[0][0, 0, 0]
    assert not torch.equal(avg, nearest)


def test_central_ranges_are_disjoint_cover_and_lie_in_their_windows():
    from medfeat_bpr_diffusion.tiling import central_ranges

    for size, win, ov, al in [
        (36, 16, 0.5, 4),
        (100, 32, 0.75, 8),
        (64, 64, 0.5, 8),
        (40, 16, 0.0, 4),
    ]:
        starts = window_starts(size, win, ov, al)
        ranges = central_ranges(starts, min(win, size), size, al)
        assert [i for r in ranges for i in r] == list(range(size))
        for s, r in zip(starts, ranges, strict=True):
            assert len(r) == 0 or (r.start >= s and r.stop <= s + win)
            assert r.start % al == 0
