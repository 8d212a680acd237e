"""The MAISI autoencoder's encoder, evaluated layer by layer in slabs to bound memory.

MONAI's ``MaisiEncoder`` keeps up to four full-resolution activations alive at once (the block
input, the group-norm pieces and their concatenation, the split convolution outputs and theirs),
about 17 GiB for a 256^3 volume with 64 channels. Here each layer is computed slab by slab along
the first spatial axis from the same weights and the same arithmetic:

- group norm: the per-group mean and variance of the whole input (the same reductions as
  ``MaisiGroupNorm3D``), then normalise, affine and SiLU one slab at a time, inside the next
  convolution's slab loop;
- convolutions: each output slab from its input rows plus the kernel's halo, zero padded at the
  volume's borders only, written into a preallocated output;
- residual blocks: the second convolution adds its slab to the block input in place (the input
  is no longer needed), so a block holds two full-resolution activations, not four.

The result equals MONAI's forward up to floating-point rounding (different convolution shapes).
Blocks of other types (attention) are run as they are.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Pre = Callable[[torch.Tensor], torch.Tensor]


def conv_of(module: nn.Module) -> nn.Conv3d:
    """The ``nn.Conv3d`` inside a MONAI convolution wrapper."""
    return next(m for m in module.modules() if isinstance(m, nn.Conv3d))


def norm_pre(norm: nn.GroupNorm, x: torch.Tensor, *, silu: bool) -> Pre:
    """Slab function applying ``norm`` (statistics of the whole ``x``) and optionally SiLU.

    The statistics are the reductions ``MaisiGroupNorm3D`` computes; the element-wise steps are
    the same operations in the same order, so each slab equals the full-volume result.
    """
    g, c = norm.num_groups, x.shape[1]
    view = x.view(x.shape[0], g, c // g, *x.shape[2:])
    means, stds = [], []
    for i in range(g):
        part = view[:, i : i + 1].to(dtype=torch.float32)
        means.append(part.mean([2, 3, 4, 5], keepdim=True))
        stds.append(part.var([2, 3, 4, 5], unbiased=False, keepdim=True).add_(norm.eps).sqrt_())
    return norm_apply(norm, torch.cat(means, 1), torch.cat(stds, 1), silu=silu)


def norm_apply(norm: nn.GroupNorm, mean: torch.Tensor, std: torch.Tensor, *, silu: bool) -> Pre:
    """Slab function normalising by per-group ``mean``/``std`` ``[N, g, 1, 1, 1, 1]``, then
    ``norm``'s affine and optionally SiLU."""
    g = norm.num_groups
    c = norm.num_channels
    weight = norm.weight.view(1, c, 1, 1, 1) if norm.affine else None
    bias = norm.bias.view(1, c, 1, 1, 1) if norm.affine else None

    def apply(slab: torch.Tensor) -> torch.Tensor:
        shape = slab.shape
        out = ((slab.view(shape[0], g, c // g, *shape[2:]) - mean) / std).view(shape)
        if weight is not None:
            out.mul_(weight).add_(bias)
        return F.silu(out) if silu else out

    return apply


def conv_rows(
    x: torch.Tensor,
    conv: nn.Conv3d,
    pad_lo: tuple[int, int, int],
    pad_hi: tuple[int, int, int],
    a: int,
    b: int,
    pre: Pre | None = None,
) -> torch.Tensor:
    """Output rows ``a:b`` (axis 2) of ``conv(zero_pad(pre(x)))``, from x's rows and halo only."""
    d = x.shape[2]
    k, s = conv.kernel_size, conv.stride
    r0 = a * s[0] - pad_lo[0]
    r1 = (b - 1) * s[0] + k[0] - pad_lo[0]
    src = x[:, :, max(r0, 0) : min(r1, d)]
    if pre is not None:
        src = pre(src)
    pads = (pad_lo[2], pad_hi[2], pad_lo[1], pad_hi[1], max(0, -r0), max(0, r1 - d))
    return F.conv3d(F.pad(src, pads), conv.weight, conv.bias, stride=s)


def conv_slabs(
    x: torch.Tensor,
    conv: nn.Conv3d,
    pad_lo: tuple[int, int, int],
    pad_hi: tuple[int, int, int],
    *,
    slab_bytes: int,
    pre: Pre | None = None,
    out: torch.Tensor | None = None,
    residual: Callable[[int, int], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``conv(zero_pad(pre(x)))`` computed in slabs of output rows along axis 2.

    ``pad_lo``/``pad_hi`` are the zero padding before/after each spatial axis; ``residual(a, b)``
    (rows ``a:b`` of the output) is added to each slab; ``out`` may be a tensor to overwrite (it
    must not be read by later slabs).
    """
    n, _, d, h, w = x.shape
    k, s = conv.kernel_size, conv.stride
    sizes = [
        (dim + lo + hi - kk) // ss + 1
        for dim, lo, hi, kk, ss in zip((d, h, w), pad_lo, pad_hi, k, s, strict=True)
    ]
    if out is None:
        out = x.new_empty((n, conv.out_channels, *sizes))
    in_row = x.shape[1] * (h + pad_lo[1] + pad_hi[1]) * (w + pad_lo[2] + pad_hi[2]) * s[0] * 3
    out_row = conv.out_channels * sizes[1] * sizes[2] * 2
    rows = max(1, slab_bytes // (x.element_size() * (in_row + out_row)))
    for a in range(0, sizes[0], rows):
        b = min(a + rows, sizes[0])
        y = conv_rows(x, conv, pad_lo, pad_hi, a, b, pre)
        if residual is not None:
            y += residual(a, b)
        out[:, :, a:b] = y
        del y
    return out


def _same_pad(conv: nn.Conv3d) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    pad = tuple(int(p) for p in conv.padding)
    return pad, pad


def _res_block(block: nn.Module, x: torch.Tensor, owned: bool, slab: int) -> torch.Tensor:
    """``MaisiResBlock``: x + conv2(silu(norm2(conv1(silu(norm1(x)))))), shortcut if needed."""
    c1, c2 = conv_of(block.conv1), conv_of(block.conv2)
    h = conv_slabs(x, c1, *_same_pad(c1), slab_bytes=slab, pre=norm_pre(block.norm1, x, silu=True))
    pre2 = norm_pre(block.norm2, h, silu=True)
    if block.in_channels != block.out_channels:
        nin = conv_of(block.nin_shortcut)

        def shortcut(a: int, b: int) -> torch.Tensor:
            return F.conv3d(x[:, :, a:b], nin.weight, nin.bias)

        return conv_slabs(h, c2, *_same_pad(c2), slab_bytes=slab, pre=pre2, residual=shortcut)
    target = x if owned else None  # x's rows are read only by their own slab's residual
    return conv_slabs(
        h, c2, *_same_pad(c2), slab_bytes=slab, pre=pre2, out=target,
        residual=lambda a, b: x[:, :, a:b],
    )  # fmt: skip


def _slab_rows(x: torch.Tensor, conv: nn.Conv3d, slab: int) -> int:
    """Rows of one slab of a stride-1 same-padded convolution (at least 2)."""
    row = x.shape[3] * x.shape[4] * (x.shape[1] * 3 + conv.out_channels * 3)
    return max(2, slab // (x.element_size() * row))


def _res_block_recompute(block: nn.Module, x: torch.Tensor, owned: bool, slab: int) -> torch.Tensor:
    """``MaisiResBlock`` holding only its input: ``conv1``'s output is never stored whole.

    A first pass computes ``h = conv1(silu(norm1(x)))`` slab by slab only for ``norm2``'s group
    statistics (float64 sums); a second pass recomputes each slab of ``h`` with the rows that
    ``conv2`` needs and writes ``x + conv2(silu(norm2(h)))`` into ``x``, one slab behind, once
    no later slab reads those rows. ``conv1`` runs twice: less memory, more time.
    """
    c1, c2 = conv_of(block.conv1), conv_of(block.conv2)
    pre1 = norm_pre(block.norm1, x, silu=True)
    pad1, pad2 = _same_pad(c1), _same_pad(c2)
    n, d = x.shape[0], x.shape[2]
    rows = _slab_rows(x, c1, slab)
    g, c = block.norm2.num_groups, c1.out_channels
    sums = torch.zeros((n, g), dtype=torch.float64, device=x.device)
    squares = torch.zeros_like(sums)
    for a in range(0, d, rows):
        h = conv_rows(x, c1, *pad1, a, min(a + rows, d), pre1).view(n, g, -1).double()
        sums += h.sum(2)
        squares += (h * h).sum(2)
        del h
    count = (c // g) * x[0, 0].numel()
    mean = sums / count
    var = (squares / count - mean * mean).clamp_min(0)
    view = (n, g, 1, 1, 1, 1)
    std = (var + block.norm2.eps).sqrt().float().view(view)
    pre2 = norm_apply(block.norm2, mean.float().view(view), std, silu=True)
    out = x if owned else torch.empty_like(x)
    pending: tuple[int, int, torch.Tensor] | None = None
    k2 = pad2[0][0]
    for a in range(0, d, rows):
        b = min(a + rows, d)
        lo, hi = max(a - k2, 0), min(b + k2, d)
        h = pre2(conv_rows(x, c1, *pad1, lo, hi, pre1))
        pads = (k2, k2, k2, k2, k2 - (a - lo), k2 - (hi - b))
        y = F.conv3d(F.pad(h, pads), c2.weight, c2.bias)
        del h
        y += x[:, :, a:b]
        if pending is not None:  # this slab has read the rows of x it needs: write the last one
            out[:, :, pending[0] : pending[1]] = pending[2]
        pending = (a, b, y)
    if pending is not None:
        out[:, :, pending[0] : pending[1]] = pending[2]
    return out


def encode_streaming(
    autoencoder: nn.Module,
    x: torch.Tensor,
    *,
    slab_bytes: int = 256 * 2**20,
    recompute: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z_mu, z_sigma)`` of MONAI's ``AutoencoderKL.encode`` with slab-wise layers.

    ``recompute``: residual blocks with as many input as output channels hold one
    full-resolution activation instead of two, computing their first convolution twice.
    """
    from monai.apps.generation.maisi.networks.autoencoderkl_maisi import (
        MaisiConvolution,
        MaisiDownsample,
        MaisiGroupNorm3D,
        MaisiResBlock,
    )

    blocks = list(autoencoder.encoder.blocks)
    owned = False  # whether x is an intermediate of ours (may be overwritten)
    i = 0
    while i < len(blocks):
        blk = blocks[i]
        nxt = blocks[i + 1] if i + 1 < len(blocks) else None
        if isinstance(blk, MaisiResBlock):
            same = blk.in_channels == blk.out_channels
            block_fn = _res_block_recompute if recompute and same else _res_block
            x = block_fn(blk, x, owned, slab_bytes)
        elif isinstance(blk, MaisiConvolution):
            c = conv_of(blk)
            x = conv_slabs(x, c, *_same_pad(c), slab_bytes=slab_bytes)
        elif isinstance(blk, MaisiDownsample):  # F.pad(x, (0, 1) * 3) then a stride-2 convolution
            x = conv_slabs(
                x, conv_of(blk), pad_lo=(0, 0, 0), pad_hi=(1, 1, 1), slab_bytes=slab_bytes
            )
        elif isinstance(blk, MaisiGroupNorm3D) and isinstance(nxt, MaisiConvolution):
            c = conv_of(nxt)  # the final norm (no activation) fused into the last convolution
            pre = norm_pre(blk, x, silu=False)
            x = conv_slabs(x, c, *_same_pad(c), slab_bytes=slab_bytes, pre=pre)
            i += 1
        else:
            x = blk(x)
        owned = True
        i += 1
    z_mu = autoencoder.quant_conv_mu(x)
    z_log_var = autoencoder.quant_conv_log_sigma(x)
    del x
    z_log_var = torch.clamp(z_log_var, -30.0, 20.0)
    return z_mu, torch.exp(z_log_var / 2)
