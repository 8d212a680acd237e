"""Overlapping sliding windows over a volume, aligned to a stride, averaged where they overlap.

MONAI's ``sliding_window_inference`` hands the predictor only the window's tensor; here each window
also needs its position (to crop coarser feature levels and noise consistently), so the tiling is
written out. Averaging with uniform weights reconstructs a constant map exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch


def window_starts(size: int, window: int, overlap: float, align: int = 1) -> list[int]:
    """Start indices covering ``[0, size)`` with windows of ``window`` and the given overlap.

    Starts are multiples of ``align``; the last window ends at ``size`` (``size`` and ``window`` must
    be multiples of ``align`` and ``window <= size``).
    """
    if window >= size:
        return [0]
    step = max(align, int(round(window * (1.0 - overlap) / align)) * align)
    starts = list(range(0, size - window + 1, step))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def sliding_average(
    shape: Sequence[int],
    window: Sequence[int],
    overlap: float,
    strides: Sequence[int],
    channels: Sequence[int],
    predict: Callable[[tuple[slice, ...]], list[torch.Tensor]],
    align: int = 1,
) -> list[torch.Tensor]:
    """Run ``predict(window_slices)`` over overlapping windows and average its outputs.

    ``predict`` returns one tensor ``[C_l, *window // stride_l]`` per output ``l``; the results are
    ``[C_l, *shape // stride_l]``. ``shape`` and ``window`` must be multiples of every stride.
    """
    starts = [window_starts(n, w, overlap, align) for n, w in zip(shape, window, strict=True)]
    sums = [
        torch.zeros(c, *(n // s for n in shape)) for c, s in zip(channels, strides, strict=True)
    ]
    counts = [torch.zeros(1, *(n // s for n in shape)) for s in strides]
    for start in itertools.product(*starts):
        sl = tuple(slice(a, a + min(w, n)) for a, w, n in zip(start, window, shape, strict=True))
        outs = predict(sl)
        for out, acc, cnt, s in zip(outs, sums, counts, strides, strict=True):
            sub = (slice(None), *[slice(x.start // s, x.stop // s) for x in sl])
            acc[sub] += out.float().cpu()
            cnt[sub] += 1
    return [acc / cnt.clamp_min(1) for acc, cnt in zip(sums, counts, strict=True)]
