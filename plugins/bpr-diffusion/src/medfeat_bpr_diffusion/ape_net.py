"""APE's published network: a 3D ConvNeXt feature-pyramid U-Net with a linear dense head.

APE (Goncharov et al., github.com/mishgon/ape, MIT) builds ``vox2vec``'s ``UNet3d`` with a stride-4
stem, pyramid widths (96, 192, 384, 768), ConvNeXt blocks (hidden factor 4, layer scale), depths
((2, 1), (2, 1), (8, 1), 3) for (down, up) stages and the bottom, LayerNorm everywhere, final
LayerNorm + GELU on every pyramid level, a linear head (one 1x1 conv per level, upsampled and
summed, bias on the finest only), a sigmoid, and a learned per-channel ``scale``. Its output is
3 coordinates per voxel at stride 4.

Module and parameter names follow ``medimm``'s ``FPN3d`` (the library vox2vec's U-Net is built on),
so a Lightning checkpoint of APE (``state_dict`` with keys ``nn.fpn.*``, ``nn.head.*``, ``scale``)
loads strictly. APE's training code pins a vox2vec revision that is not public in this form, and
no released APE checkpoint was available to check against: if a file does not match, the loader
names the keys that differ, and ``ape-exported`` (a ``torch.export`` program of any revision)
remains the way in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class APEArchitecture:
    """The hyper-parameters of APE's ``UNet3d`` (defaults: the published model)."""

    in_channels: int = 1
    out_channels: int = 3
    stem_stride: int = 4
    widths: tuple[int, ...] = (96, 192, 384, 768)
    depths: tuple[tuple[int, int], ...] = ((2, 1), (2, 1), (8, 1))
    bottom_depth: int = 3
    hidden_factor: float = 4.0
    kernel_size: int = 3

    @property
    def max_stride(self) -> int:
        return self.stem_stride * 2 ** len(self.depths)


class LayerNorm3d(nn.LayerNorm):
    """LayerNorm over the channels of a ``[N, C, D, H, W]`` tensor (eps 1e-6, as in APE)."""

    def __init__(self, channels: int, affine: bool = True) -> None:
        super().__init__(channels, eps=1e-6, elementwise_affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


class LayerScale3d(nn.Module):
    def __init__(self, channels: int, init: float = 1e-6) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels, 1, 1, 1), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class ConvNeXtBlock3d(nn.Module):
    """Depthwise conv, LN, GELU, 1x1 expand, LN, GELU, 1x1 project, layer scale, residual."""

    def __init__(self, channels: int, hidden_factor: float, kernel_size: int) -> None:
        super().__init__()
        hidden = int(channels * hidden_factor)
        self.conv_1 = nn.Conv3d(channels, channels, kernel_size, padding="same", groups=channels)
        self.norm_1 = LayerNorm3d(channels)
        self.conv_2 = nn.Conv3d(channels, hidden, 1)
        self.norm_2 = LayerNorm3d(hidden)
        self.conv_3 = nn.Conv3d(hidden, channels, 1)
        self.layerscale = LayerScale3d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.norm_1(self.conv_1(x)))
        y = F.gelu(self.norm_2(self.conv_2(y)))
        return x + self.layerscale(self.conv_3(y))


class ConvNeXtStage3d(nn.Module):
    def __init__(self, channels: int, depth: int, hidden_factor: float, kernel_size: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            ConvNeXtBlock3d(channels, hidden_factor, kernel_size) for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class Stem3d(nn.Module):
    """Strided patchify conv to ``width - 1`` channels, LN, plus a channel of ones (the unmasked
    indicator of APE's masked training)."""

    def __init__(self, in_channels: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, width - 1, stride, stride)
        self.norm = LayerNorm3d(width - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.conv(x))
        return torch.cat([y, y.new_ones(y.shape[0], 1, *y.shape[2:])], 1)


def _match(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Crop, then replicate-pad, ``x`` to the spatial shape of ``like``."""
    x = x[(..., *[slice(0, n) for n in like.shape[-3:]])]
    pad = [
        p
        for n, m in zip(reversed(like.shape[-3:]), reversed(x.shape[-3:]), strict=True)
        for p in (0, n - m)
    ]
    return F.pad(x, pad, mode="replicate") if any(pad) else x


class ConvNeXtFPN3d(nn.Module):
    """The U-shaped feature pyramid: returns one normalised map per level, finest first."""

    def __init__(self, a: APEArchitecture) -> None:
        super().__init__()
        w, hf, k = a.widths, a.hidden_factor, a.kernel_size
        self.stem = Stem3d(a.in_channels, w[0], a.stem_stride)
        self.left_stages = nn.ModuleList()
        self.middle_norms = nn.ModuleList()
        self.down_blocks = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        self.skip_connections = nn.ModuleList()
        self.right_stages = nn.ModuleList()
        self.final_norms = nn.ModuleList()
        for c1, c2, (d_left, d_right) in zip(w[:-1], w[1:], a.depths, strict=True):
            self.left_stages.append(ConvNeXtStage3d(c1, d_left, hf, k))
            self.middle_norms.append(LayerNorm3d(c1))
            self.down_blocks.append(nn.Conv3d(c1, c2, 2, 2))
            self.up_blocks.append(
                nn.Sequential(nn.Conv3d(c2, c1, 1), nn.Upsample(scale_factor=2, mode="trilinear"))
            )
            self.skip_connections.append(nn.Conv3d(c1, c1, 1))
            self.right_stages.append(ConvNeXtStage3d(c1, d_right, hf, k))
            self.final_norms.append(LayerNorm3d(c1))
        self.bottom_stage = ConvNeXtStage3d(w[-1], a.bottom_depth, hf, k)
        self.final_norms.append(LayerNorm3d(w[-1]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        pyramid = []
        for stage, norm, down in zip(
            self.left_stages, self.middle_norms, self.down_blocks, strict=True
        ):
            x = norm(stage(x))
            pyramid.append(x)
            x = down(x)
        x = self.bottom_stage(x)
        pyramid.append(F.gelu(self.final_norms[-1](x)))
        for i in reversed(range(len(self.up_blocks))):
            skip = self.skip_connections[i](pyramid[i])
            x = self.right_stages[i](_match(self.up_blocks[i](x), skip) + skip)
            pyramid[i] = F.gelu(self.final_norms[i](x))
        return pyramid


class LinearDenseHead3d(nn.Module):
    """One 1x1 conv per pyramid level (bias on the finest only), upsampled and summed."""

    def __init__(self, out_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv3d(c, out_channels, 1, bias=i == 0) for i, c in enumerate(widths)
        )

    def forward(self, pyramid: Sequence[torch.Tensor]) -> torch.Tensor:
        outs = [conv(p) for conv, p in zip(self.convs, pyramid, strict=True)]
        x = outs.pop()
        while outs:
            y = outs.pop()
            x = _match(F.interpolate(x, scale_factor=2, mode="trilinear"), y) + y
        return x


class APENetwork(nn.Module):
    """``[N, 1, A0, A1, A2]`` CT in [0, 1] -> ``[N, 3, A0/4, A1/4, A2/4]`` coordinates (sigmoid x scale)."""

    def __init__(self, arch: APEArchitecture | None = None) -> None:
        super().__init__()
        self.arch = arch or APEArchitecture()
        self.fpn = ConvNeXtFPN3d(self.arch)
        self.head = LinearDenseHead3d(self.arch.out_channels, self.arch.widths)
        self.scale = nn.Parameter(torch.ones(self.arch.out_channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.arch.max_stride
        if any(n % m for n in x.shape[-3:]):
            raise ValueError(f"APE input sides must be multiples of {m}, got {tuple(x.shape[-3:])}")
        return torch.sigmoid(self.head(self.fpn(x))) * self.scale
