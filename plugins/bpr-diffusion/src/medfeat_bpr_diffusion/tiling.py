"""Overlapping sliding windows over a volume, aligned to a stride, merged where they overlap.

MONAI's ``sliding_window_inference`` hands the predictor only the window's tensor; here each window
also needs its position (to crop coarser feature levels and noise consistently), so the tiling is
written out. Two ways to merge overlapping windows:

- ``average``: uniform average of every window covering a voxel (reconstructs a constant exactly);
- ``central``: vox2vec's stitching, each voxel taken from the one window whose centre is nearest
  (cuts in the middle of each overlap, aligned to the coarsest stride), so window borders, where a
  network sees the least context, are never used where another window covers the voxel.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Literal

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


def central_ranges(starts: Sequence[int], window: int, size: int, align: int = 1) -> list[range]:
    """The part of ``[0, size)`` each window owns when overlaps are cut in their middle.

    Cuts are multiples of ``align`` and stay inside both windows, so the ranges are disjoint, cover
    ``[0, size)`` and each lies inside its window.
    """
    cuts = [0]
    for a, b in zip(starts, starts[1:], strict=False):
        lo, hi = b, min(a + window, size)  # the overlap of windows a and b
        mid = int(round((lo + hi) / 2 / align)) * align
        cuts.append(min(max(mid, lo, cuts[-1]), hi))
    cuts.append(size)
    return [range(c0, c1) for c0, c1 in zip(cuts, cuts[1:], strict=False)]


def sliding_average(
    shape: Sequence[int],
    window: Sequence[int],
    overlap: float,
    strides: Sequence[int],
    channels: Sequence[int],
    predict: Callable[[tuple[slice, ...]], list[torch.Tensor]],
    align: int = 1,
    stitching: Literal["average", "central"] = "average",
) -> list[torch.Tensor]:
    """Run ``predict(window_slices)`` over overlapping windows and merge its outputs.

    ``predict`` returns one tensor ``[C_l, *window // stride_l]`` per output ``l``; the results are
    ``[C_l, *shape // stride_l]``. ``shape`` and ``window`` must be multiples of every stride (and of
    ``align``, the coarsest one). ``stitching`` is ``average`` or ``central`` (module docstring).
    """
    if stitching not in ("average", "central"):
        raise ValueError(f"stitching must be 'average' or 'central', not {stitching!r}")
    starts = [window_starts(n, w, overlap, align) for n, w in zip(shape, window, strict=True)]
    owned = [
        central_ranges(st, min(w, n), n, align)
        for st, w, n in zip(starts, window, shape, strict=True)
    ]
    sums = [
        torch.zeros(c, *(n // s for n in shape)) for c, s in zip(channels, strides, strict=True)
    ]
    counts = [torch.zeros(1, *(n // s for n in shape)) for s in strides]
    for index in itertools.product(*(range(len(st)) for st in starts)):
        start = [st[i] for st, i in zip(starts, index, strict=True)]
        sl = tuple(slice(a, a + min(w, n)) for a, w, n in zip(start, window, shape, strict=True))
        own = [ow[i] for ow, i in zip(owned, index, strict=True)]
        if stitching == "central" and any(len(r) == 0 for r in own):
            continue  # a window that owns nothing need not run
        outs = predict(sl)
        for out, acc, cnt, s in zip(outs, sums, counts, strides, strict=True):
            if stitching == "average":
                dst = [slice(x.start // s, x.stop // s) for x in sl]
                src = [slice(None)] * 3
            else:
                dst = [slice(r.start // s, r.stop // s) for r in own]
                src = [
                    slice((r.start - x.start) // s, (r.stop - x.start) // s)
                    for r, x in zip(own, sl, strict=True)
                ]
            acc[(slice(None), *dst)] += out.float().cpu()[(slice(None), *src)]
            cnt[(slice(None), *dst)] += 1
    return [acc / cnt.clamp_min(1) for acc, cnt in zip(sums, counts, strict=True)]
