"""MIND-SSC: modality independent neighbourhood descriptor with self-similarity context.

Heinrich et al., "Towards realtime multimodal fusion for image-guided interventions using
self-similarity context", MICCAI 2013.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["mind_ssc", "ssc_offsets", "gaussian_smooth"]

# Six-neighbourhood of the centre voxel, as offsets in (D, H, W) order.
_SIX = (
    (-1, 0, 0),
    (0, 0, -1),
    (0, -1, 0),
    (0, 0, 1),
    (1, 0, 0),
    (0, 1, 0),
)
# Channel order of the published implementation (matches the original C++ code).
_ORDER = (6, 8, 1, 11, 2, 10, 0, 7, 9, 4, 5, 3)


def ssc_offsets() -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """The 12 pairs of six-neighbours at squared distance 2 compared by MIND-SSC (unit dilation)."""
    pairs = []
    for a, b in itertools.product(range(6), range(6)):
        d2 = sum((p - q) ** 2 for p, q in zip(_SIX[a], _SIX[b], strict=True))
        if a > b and d2 == 2:
            pairs.append((_SIX[a], _SIX[b]))
    return [pairs[i] for i in _ORDER]


def _shifted(
    padded: Tensor, offset: tuple[int, int, int], pad: int, shape: tuple[int, ...]
) -> Tensor:
    """``img(x + offset)`` from a replicate-padded image."""
    d, h, w = shape
    k, j, i = (pad + o for o in offset)
    return padded[:, :, k : k + d, j : j + h, i : i + w]


def _per_axis(value: int | Sequence[int], name: str) -> tuple[int, int, int]:
    """An int for every axis, or one per axis ``(D, H, W)``."""
    values = (value,) * 3 if isinstance(value, int) else tuple(int(v) for v in value)
    if len(values) != 3:
        raise ValueError(f"{name} needs one value or three (D, H, W), got {value!r}")
    return values


def _box(x: Tensor, radius: int | Sequence[int]) -> Tensor:
    """Mean filter of size ``2 * radius + 1`` per axis (an int, or one per axis ``(D, H, W)``),
    replicate padding (separable, shifted sums)."""
    radii = _per_axis(radius, "radius")
    for dim, r in zip((2, 3, 4), radii, strict=True):
        if r <= 0:
            continue
        size = 2 * r + 1
        pad = [0] * 6
        pad[2 * (4 - dim)] = r
        pad[2 * (4 - dim) + 1] = r
        padded = F.pad(x, pad, mode="replicate")
        n = x.shape[dim]
        acc = padded.narrow(dim, 0, n).clone()
        for o in range(1, size):
            acc += padded.narrow(dim, o, n)
        x = acc.div_(size)
    return x


def gaussian_smooth(img: Tensor, sigma_vox: float | Sequence[float]) -> Tensor:
    """Separable Gaussian smoothing of ``[B, C, D, H, W]`` with replicate padding; ``sigma_vox``
    is one width or one per axis ``(D, H, W)``, in voxels (0 = none along that axis)."""
    sigmas = (sigma_vox,) * 3 if isinstance(sigma_vox, int | float) else tuple(sigma_vox)
    b, c = img.shape[:2]
    out = img.reshape(b * c, 1, *img.shape[2:])
    for dim, sigma in enumerate(sigmas):
        if sigma <= 0:
            continue
        radius = max(1, int(round(3 * sigma)))
        x = torch.arange(-radius, radius + 1, device=img.device, dtype=img.dtype)
        k = torch.exp(-0.5 * (x / sigma) ** 2)
        k = k / k.sum()
        shape = [1, 1, 1, 1, 1]
        shape[2 + dim] = k.numel()
        pad = [0] * 6
        pad[2 * (2 - dim)] = radius
        pad[2 * (2 - dim) + 1] = radius
        out = F.conv3d(F.pad(out, pad, mode="replicate"), k.view(shape))
    return out.reshape(img.shape)


def mind_ssc(
    img: Tensor, radius: int | Sequence[int] = 2, dilation: int | Sequence[int] = 2
) -> Tensor:
    """MIND-SSC descriptor of ``img`` ``[B, 1, D, H, W]``; returns ``[B, 12, D, H, W]`` in ``(0, 1]``.

    ``radius`` and ``dilation`` are voxels, one value or one per axis ``(D, H, W)`` (so that an
    anisotropic grid gets the same lengths in mm along every axis).
    For each of the 12 pairs of six-neighbours (at distance ``dilation`` voxels from the centre)
    the patch SSD between the two shifted copies is computed with a ``(2 * radius + 1)^3`` box
    filter, the per-voxel minimum is subtracted, the result is divided by the per-voxel mean over
    channels (the local variance estimate, clamped to ``[1e-3, 1e3]`` times its global mean) and
    mapped through ``exp(-x)``. The descriptor is invariant to affine intensity changes.

    Implementation note: the 12 pairs only have 6 distinct difference vectors ``v = a - b``, so
    the box-filtered squared differences ``(I(y + v) - I(y))^2`` are computed 6 times and each
    channel is a shifted view (replicate border) of one of them.
    """
    if img.dim() != 5 or img.shape[1] != 1:
        raise ValueError(f"expected [B, 1, D, H, W], got {tuple(img.shape)}")
    shape = tuple(img.shape[2:])
    dil = _per_axis(dilation, "dilation")
    pairs = ssc_offsets()
    # canonical difference vectors (first non-zero component positive)
    canon: dict[tuple[int, int, int], Tensor] = {}
    plan = []
    for a, b in pairs:
        v = tuple(p - q for p, q in zip(a, b, strict=True))
        first = next(c for c in v if c != 0)
        if first > 0:
            plan.append((v, b))  # (I(b + v) - I(b))^2 = D_v(x + b)
        else:
            v = tuple(-c for c in v)
            plan.append((v, a))  # (I(a + v) - I(a))^2 with a = b - v
        canon.setdefault(v, None)
    pads = dil
    padded = F.pad(img, (pads[2], pads[2], pads[1], pads[1], pads[0], pads[0]), mode="replicate")
    for v in canon:
        # D_v(y) = (I(y + v) - I(y))^2 on the padded domain restricted to the image + margin
        sv = tuple(c * dl for c, dl in zip(v, dil, strict=True))
        d, h, w = (n + 2 * p for n, p in zip(shape, pads, strict=True))
        lo = [max(0, -c) for c in sv]
        hi = [n - max(0, c) for n, c in zip((d, h, w), sv, strict=True)]
        base = padded[:, :, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        moved = padded[
            :,
            :,
            lo[0] + sv[0] : hi[0] + sv[0],
            lo[1] + sv[1] : hi[1] + sv[1],
            lo[2] + sv[2] : hi[2] + sv[2],
        ]
        dv = (moved - base).pow_(2)
        # restore the full padded extent (replicate), then box filter
        dv = F.pad(
            dv,
            (lo[2], w - hi[2], lo[1], h - hi[1], lo[0], d - hi[0]),
            mode="replicate",
        )
        canon[v] = _box(dv, radius)
    chans = []
    for v, origin in plan:
        k, j, i = (p + o * dl for p, o, dl in zip(pads, origin, dil, strict=True))
        chans.append(canon[v][:, :, k : k + shape[0], j : j + shape[1], i : i + shape[2]])
    ssd = torch.cat(chans, dim=1)
    del chans, canon, padded
    mind = ssd - ssd.min(dim=1, keepdim=True).values
    var = mind.mean(dim=1, keepdim=True)
    mean_var = var.flatten(1).mean(dim=1).view(-1, 1, 1, 1, 1)
    var = torch.maximum(torch.minimum(var, mean_var * 1000.0), mean_var * 0.001)
    var = var.clamp_min(torch.finfo(img.dtype).tiny)
    return torch.exp_(mind.div_(var).neg_())
