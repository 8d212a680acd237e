"""Functional image similarity losses ``f(a, b, mask=None) -> scalar`` (lower is better).

Inputs are ``[B, C, *spatial]`` tensors; ``mask`` is an optional non-negative weight map
broadcastable to ``[B, 1, *spatial]``. All losses are differentiable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ssd", "ncc", "local_ncc", "cosine", "nmi"]

_EPS = 1e-5


def _weights(a: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return torch.ones((a.shape[0], 1, *a.shape[2:]), device=a.device, dtype=a.dtype)
    return mask.to(a.dtype).expand(a.shape[0], 1, *a.shape[2:])


def _wmean(x: Tensor, w: Tensor) -> Tensor:
    """Weighted mean over the spatial axes of ``[B, C, ...]``; returns ``[B, C]``."""
    num = (x * w).flatten(2).sum(-1)
    return num / w.flatten(2).sum(-1).clamp_min(_EPS)


def ssd(a: Tensor, b: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared difference (averaged over channels and masked voxels)."""
    return _wmean((a - b).pow(2), _weights(a, mask)).mean()


def ncc(a: Tensor, b: Tensor, mask: Tensor | None = None) -> Tensor:
    """``1 - NCC`` with one global correlation per batch item and channel; ``0`` for ``a == b``."""
    w = _weights(a, mask)
    ma, mb = _wmean(a, w), _wmean(b, w)
    view = (*ma.shape, *([1] * (a.dim() - 2)))
    da, db = a - ma.view(view), b - mb.view(view)
    cov = _wmean(da * db, w)
    var_a, var_b = _wmean(da * da, w), _wmean(db * db, w)
    return (1.0 - cov / torch.sqrt(var_a * var_b + _EPS**2)).mean()


def _box_mean(x: Tensor, window: Sequence[int]) -> Tensor:
    """Mean over a box of ``window[a]`` voxels along spatial axis ``a``, clipped to the image
    (separable cumulative sums)."""
    for dim, side in zip(range(2, x.dim()), window, strict=True):
        r, n = side // 2, x.shape[dim]
        pad = [0, 0] * (x.dim() - dim - 1) + [r + 1, r]
        c = F.pad(x, pad).cumsum(dim)
        total = c.narrow(dim, side, n) - c.narrow(dim, 0, n)
        pos = torch.arange(n, device=x.device)
        count = (torch.clamp(pos + r, max=n - 1) - torch.clamp(pos - r, min=0) + 1).to(x.dtype)
        x = total / count.view([-1] + [1] * (x.dim() - dim - 1))
    return x


def _window(window: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    """``window`` as one odd side per spatial axis."""
    sides = (window,) * ndim if isinstance(window, int) else tuple(int(w) for w in window)
    if len(sides) != ndim:
        raise ValueError(f"window needs one side per spatial axis ({ndim}), got {window}")
    if any(w < 1 or w % 2 != 1 for w in sides):
        raise ValueError(f"window sides must be odd and positive, got {window}")
    return sides


def local_ncc(
    a: Tensor, b: Tensor, mask: Tensor | None = None, window: int | Sequence[int] = 9
) -> Tensor:
    """``1 - mean local NCC`` over boxes of odd side ``window`` voxels, one side for every axis
    or one per spatial axis (e.g. ``(D, H, W)``); ``0`` for ``a == b`` wherever the window has
    non-zero variance."""
    sides = _window(window, a.dim() - 2)
    ma, mb = _box_mean(a, sides), _box_mean(b, sides)
    cov = _box_mean(a * b, sides) - ma * mb
    var_a = (_box_mean(a * a, sides) - ma * ma).clamp_min(0)
    var_b = (_box_mean(b * b, sides) - mb * mb).clamp_min(0)
    cc = cov / torch.sqrt(var_a * var_b + _EPS**2)
    return 1.0 - _wmean(cc, _weights(a, mask)).mean()


def cosine(a: Tensor, b: Tensor, mask: Tensor | None = None) -> Tensor:
    """``1 - mean cosine similarity`` of the channel vectors at each voxel."""
    cos = F.cosine_similarity(a, b, dim=1, eps=_EPS).unsqueeze(1)
    return 1.0 - _wmean(cos, _weights(a, mask)).mean()


def nmi(
    a: Tensor,
    b: Tensor,
    mask: Tensor | None = None,
    bins: int = 32,
    sigma_bins: float = 0.5,
) -> Tensor:
    """``2 - NMI`` with ``NMI = (H(a) + H(b)) / H(a, b)`` from a Gaussian Parzen joint histogram.

    Intensities (all channels pooled) are rescaled to ``[0, bins - 1]`` per input by their
    min/max; each sample contributes Gaussian weights (std ``sigma_bins`` bins) to the bins.
    The loss lies in ``[0, 1]`` and is minimal for identical inputs. Memory is
    ``O(voxels * bins)``; subsample large volumes.
    """
    w = _weights(a, mask).expand_as(a).reshape(a.shape[0], -1)
    centres = torch.arange(bins, device=a.device, dtype=a.dtype)

    def parzen(x: Tensor) -> Tensor:
        x = x.reshape(x.shape[0], -1)
        lo = x.min(dim=1, keepdim=True).values.detach()
        hi = x.max(dim=1, keepdim=True).values.detach()
        x = (x - lo) / (hi - lo).clamp_min(_EPS) * (bins - 1)
        p = torch.exp(-0.5 * ((x.unsqueeze(-1) - centres) / sigma_bins) ** 2)
        return p / p.sum(-1, keepdim=True).clamp_min(_EPS)

    pa, pb = parzen(a), parzen(b)  # [B, N, bins]
    joint = torch.einsum("bn,bni,bnj->bij", w, pa, pb)
    joint = joint / joint.sum(dim=(1, 2), keepdim=True).clamp_min(_EPS)
    p_a, p_b = joint.sum(2), joint.sum(1)

    def entropy(p: Tensor) -> Tensor:
        return -(p * torch.log(p.clamp_min(1e-12))).flatten(1).sum(-1)

    value = (entropy(p_a) + entropy(p_b)) / entropy(joint).clamp_min(_EPS)
    return (2.0 - value).mean()
