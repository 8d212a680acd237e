"""3D DDPM U-Net conditioned by channel-concatenated body-part coordinates.

MONAI's ``DiffusionModelUNet`` offers only full (quadratic) attention per level; the paper uses linear
attention at high-resolution levels, and the coordinate maps enter by concatenation at the input, so
this small network is written here. It returns the noise prediction and, on request, the decoder
activations of every level (the features of the frozen backbone).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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

    @property
    def multiple_of(self) -> int:
        """Spatial sizes must be multiples of this."""
        return 2 ** (self.levels - 1)

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
        temb = self.time(timestep_embedding(t, self.config.base_channels))
        h = self.inp(self.condition(x_t, coords))
        skips = []
        for blocks, down in self.down:
            for res, att in blocks:
                h = att(res(h, temb))
                skips.append(h)
            h = down(h)
        res1, att, res2 = self.mid
        h = res2(att(res1(h, temb)), temb)
        features: list[torch.Tensor] = [None] * self.levels  # type: ignore[list-item]
        for i, (blocks, up) in enumerate(self.up):
            level = self.levels - 1 - i
            for res, att in blocks:
                h = att(res(torch.cat([h, skips.pop()], 1), temb))
            features[level] = h
            if level > 0:
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        eps = self.out(h)
        return (eps, features) if return_features else eps
