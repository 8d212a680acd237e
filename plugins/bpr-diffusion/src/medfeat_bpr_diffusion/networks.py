"""The plugin's network architectures.

- :class:`DiffusionUNet3d`: the 3D DDPM U-Net conditioned by channel-concatenated body-part
  coordinates. MONAI's ``DiffusionModelUNet`` offers only full (quadratic) attention per level;
  the paper uses linear attention at high-resolution levels, and the coordinate maps enter by
  concatenation at the input, so this small network is written here. It returns the noise
  prediction and, on request, the decoder activations of every level (the backbone's features).
- :class:`APENetwork`: APE's published 3D ConvNeXt feature-pyramid U-Net (see its section).
- :class:`BodyPartRegressionNet`: MIC-DKFZ Body Part Regression's VGG16 slice regressor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medfeat_bpr_diffusion.config import UNetConfig


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, channels), channels)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (integer) timesteps ``[B]`` -> ``[B, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / max(half - 1, 1))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([args.sin(), args.cos()], dim=1)
    return F.pad(emb, (0, dim % 2))


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temb: int, groups: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(cin, groups), nn.Conv3d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(temb, cout)
        self.norm2, self.conv2 = _norm(cout, groups), nn.Conv3d(cout, cout, 3, padding=1)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(F.silu(temb))[:, :, None, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class _Attention(nn.Module):
    def __init__(self, channels: int, heads: int, head_channels: int, groups: int) -> None:
        super().__init__()
        self.heads, self.dim = heads, head_channels
        self.norm = _norm(channels, groups)
        self.qkv = nn.Conv3d(channels, 3 * heads * head_channels, 1, bias=False)
        self.out = nn.Conv3d(heads * head_channels, channels, 1)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        b, _, *spatial = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, self.dim, -1)
        return qkv[:, 0], qkv[:, 1], qkv[:, 2]  # [B, heads, dim, N]


class LinearAttention(_Attention):
    """Linear attention (softmax over channels for q, over tokens for k): O(N) in tokens."""

    kind = "linear"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._qkv(x)
        q = q.softmax(dim=-2) * self.dim**-0.5
        k = k.softmax(dim=-1)
        context = torch.einsum("bhdn,bhen->bhde", k, v)
        out = torch.einsum("bhde,bhdn->bhen", context, q)
        return x + self.out(out.reshape(x.shape[0], -1, *x.shape[2:]))


class FullAttention(_Attention):
    """Quadratic softmax attention over all tokens."""

    kind = "full"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (t.transpose(-1, -2) for t in self._qkv(x))  # [B, heads, N, dim]
        out = F.scaled_dot_product_attention(q, k, v).transpose(-1, -2)
        return x + self.out(out.reshape(x.shape[0], -1, *x.shape[2:]))


def attention_kinds(config: UNetConfig, patch_size_vox: Sequence[int]) -> list[str]:
    """Attention per level: the paper's rule is linear where tokens exceed channels, else full."""
    kinds = []
    for level, mult in enumerate(config.channel_mults):
        tokens = math.prod(max(1, s // 2**level) for s in patch_size_vox)
        channels = config.base_channels * mult
        if config.attention == "paper":
            kinds.append("full" if channels >= tokens else "linear")
        else:
            kinds.append(config.attention)
    return kinds


def unet_multiple_of(config: UNetConfig) -> int:
    """Spatial sizes a :class:`DiffusionUNet3d` of ``config`` takes must be multiples of this."""
    return 2 ** (len(config.channel_mults) - 1)


class DiffusionUNet3d(nn.Module):
    """Noise predictor ``eps(x_t, coords, t)``; ``coords`` is concatenated to ``x_t`` at the input."""

    def __init__(
        self,
        config: UNetConfig,
        coord_channels: int,
        patch_size_vox: Sequence[int],
        image_channels: int = 1,
    ) -> None:
        super().__init__()
        c, g = config, config.groups
        self.config, self.coord_channels = config, coord_channels
        self.levels = len(c.channel_mults)
        chans = [c.base_channels * m for m in c.channel_mults]
        self.channels = chans
        self.attention = attention_kinds(c, patch_size_vox)
        temb = 4 * c.base_channels
        self.time = nn.Sequential(
            nn.Linear(c.base_channels, temb), nn.SiLU(), nn.Linear(temb, temb)
        )
        self.inp = nn.Conv3d(image_channels + coord_channels, chans[0], 3, padding=1)

        def attn(kind: str, ch: int) -> nn.Module:
            cls = {"linear": LinearAttention, "full": FullAttention}.get(kind)
            return (
                cls(ch, c.attention_heads, c.attention_head_channels, g) if cls else nn.Identity()
            )

        self.down = nn.ModuleList()
        ch = chans[0]
        for level, cout in enumerate(chans):
            blocks = nn.ModuleList()
            for _ in range(c.num_res_blocks):
                blocks.append(
                    nn.ModuleList([ResBlock(ch, cout, temb, g), attn(self.attention[level], cout)])
                )
                ch = cout
            down = (
                nn.Conv3d(ch, chans[level + 1], 3, stride=2, padding=1)
                if level < self.levels - 1
                else nn.Identity()
            )
            if level < self.levels - 1:
                ch = chans[level + 1]
            self.down.append(nn.ModuleList([blocks, down]))
        self.mid = nn.ModuleList(
            [ResBlock(ch, ch, temb, g), attn("full", ch), ResBlock(ch, ch, temb, g)]
        )
        self.up = nn.ModuleList()
        for level in reversed(range(self.levels)):
            cout = chans[level]
            blocks = nn.ModuleList()
            for _ in range(c.num_res_blocks):
                blocks.append(
                    nn.ModuleList(
                        [ResBlock(ch + cout, cout, temb, g), attn(self.attention[level], cout)]
                    )
                )
                ch = cout
            up = nn.Conv3d(ch, chans[level - 1], 3, padding=1) if level > 0 else nn.Identity()
            if level > 0:
                ch = chans[level - 1]
            self.up.append(nn.ModuleList([blocks, up]))
        self.out = nn.Sequential(
            _norm(ch, g), nn.SiLU(), nn.Conv3d(ch, image_channels, 3, padding=1)
        )

    #: recompute each block's activations in the backward pass instead of keeping them (set by
    #: the pretrainer's ``activation_checkpointing``): the same gradients, far less memory
    activation_checkpointing = False

    @property
    def multiple_of(self) -> int:
        """Spatial sizes must be multiples of this."""
        return unet_multiple_of(self.config)

    def _block(
        self, res: nn.Module, att: nn.Module, temb: torch.Tensor, *inputs: torch.Tensor
    ) -> torch.Tensor:
        """``att(res(cat(inputs), temb))``; checkpointed when training with checkpointing on."""

        def run(temb: torch.Tensor, *xs: torch.Tensor) -> torch.Tensor:
            return att(res(torch.cat(xs, 1) if len(xs) > 1 else xs[0], temb))

        if self.activation_checkpointing and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            return checkpoint(run, temb, *inputs, use_reentrant=False)
        return run(temb, *inputs)

    def condition(self, x_t: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """The network input: the noisy patch and the coordinate maps, concatenated channel-wise."""
        if coords.shape[1] != self.coord_channels:
            raise ValueError(
                f"expected {self.coord_channels} coordinate channels, got {coords.shape[1]}"
            )
        return torch.cat([x_t, coords.to(x_t.dtype)], dim=1)

    def forward(
        self,
        x_t: torch.Tensor,
        coords: torch.Tensor,
        t: torch.Tensor,
        return_features: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        features = self._decode(x_t, coords, t, finest=0)
        eps = self.out(features[0])
        return (eps, features) if return_features else eps

    def features(
        self, x_t: torch.Tensor, coords: torch.Tensor, t: torch.Tensor, levels: Sequence[int]
    ) -> list[torch.Tensor]:
        """The decoder activations of ``levels`` (in that order), as ``forward`` returns them,
        without what they do not need: the decoder stops at the finest of ``levels`` and the
        noise head never runs."""
        features = self._decode(x_t, coords, t, finest=min(levels))
        return [features[lv] for lv in levels]

    def _decode(
        self, x_t: torch.Tensor, coords: torch.Tensor, t: torch.Tensor, finest: int
    ) -> list[torch.Tensor]:
        """Decoder activations per level, coarsest to ``finest`` (finer levels stay ``None``)."""
        temb = self.time(timestep_embedding(t, self.config.base_channels))
        h = self.inp(self.condition(x_t, coords))
        skips = []
        for blocks, down in self.down:
            for res, att in blocks:
                h = self._block(res, att, temb, h)
                skips.append(h)
            h = down(h)
        res1, att, res2 = self.mid
        h = self._block(res1, att, temb, h)
        h = self._block(res2, nn.Identity(), temb, h)
        features: list[torch.Tensor] = [None] * self.levels  # type: ignore[list-item]
        for i, (blocks, up) in enumerate(self.up):
            level = self.levels - 1 - i
            for res, att in blocks:
                h = self._block(res, att, temb, h, skips.pop())
            features[level] = h
            if level == finest:
                break
            h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return features


# ----------------------------------------------------------------------------- APE
# APE's published network: a 3D ConvNeXt feature-pyramid U-Net with a linear dense head.
#
# APE (Goncharov et al., github.com/mishgon/ape, MIT) builds ``vox2vec``'s ``UNet3d`` with a stride-4
# stem, pyramid widths (96, 192, 384, 768), ConvNeXt blocks (hidden factor 4, layer scale), depths
# ((2, 1), (2, 1), (8, 1), 3) for (down, up) stages and the bottom, LayerNorm everywhere, final
# LayerNorm + GELU on every pyramid level, a linear head (one 1x1 conv per level, upsampled and
# summed, bias on the finest only), a sigmoid, and a learned per-channel ``scale``. Its output is
# 3 coordinates per voxel at stride 4.
#
# Module and parameter names follow ``medimm``'s ``FPN3d`` (the library vox2vec's U-Net is built on),
# so a Lightning checkpoint of APE (``state_dict`` with keys ``nn.fpn.*``, ``nn.head.*``, ``scale``)
# loads strictly. APE's training code pins a vox2vec revision that is not public in this form, and
# no released APE checkpoint was available to check against: if a file does not match, the loader
# names the keys that differ (re-save the weights of another revision under these names).


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


# ----------------------------------------------------------------------------- Body Part Regression
# The published bpreg architecture (VGG16 trunk with a 1-channel first conv without bias, `conv6`
# 1x1 conv, ReLU, global mean, `fc7` linear), so the public model.pt loads strictly.
VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 1
    for i, v in enumerate(VGG16):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1, bias=i != 0), nn.ReLU(inplace=True)]
            cin = int(v)
    return nn.Sequential(*layers)


class BodyPartRegressionNet(nn.Module):
    """bpreg's ``BodyPartRegression`` network (state-dict keys ``model.*``, ``conv6.*``, ``fc7.*``)."""

    def __init__(self) -> None:
        super().__init__()
        self.model = vgg16_features()
        self.conv6 = nn.Conv2d(512, 512, 1)
        self.fc7 = nn.Linear(512, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv6(self.model(x.float())))
        return self.fc7(x.mean(dim=(2, 3)))
