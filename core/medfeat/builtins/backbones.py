"""Built-in weight-free backbones."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from medfeat.components import FeatureLevel, FeatureMap
from medfeat.geometry import Image


class IntensityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    normalise: Literal["none", "minmax", "zscore", "window", "percentile"] = "minmax"
    window_min: float = Field(
        -1000.0, description="Lower bound for `window` (image units, e.g. HU)."
    )
    window_max: float = Field(1000.0, description="Upper bound for `window`.")
    percentiles: tuple[float, float] = Field(
        (0.5, 99.5), description="For `percentile`: clip to these, then map to [0, 1]."
    )


def normalise_intensity(data, config: IntensityConfig):
    """Map a float tensor to a comparable range according to ``config.normalise``."""
    import torch

    x = data.float()
    if config.normalise == "minmax":
        lo, hi = x.min(), x.max()
        return (x - lo) / (hi - lo).clamp_min(1e-12)
    if config.normalise == "zscore":
        return (x - x.mean()) / x.std().clamp_min(1e-12)
    if config.normalise == "window":
        return ((x - config.window_min) / (config.window_max - config.window_min)).clamp(0, 1)
    if config.normalise == "percentile":
        q = torch.quantile(
            x.flatten()[:: max(1, x.numel() // 1_000_000)], torch.tensor(config.percentiles) / 100.0
        )
        return ((x - q[0]) / (q[1] - q[0]).clamp_min(1e-12)).clamp(0, 1)
    return x


class IntensityBackbone:
    """The (normalised) image itself as a single-level, single-channel feature map."""

    def __init__(self, config: IntensityConfig, device: str = "cpu") -> None:
        self.config, self.device = config, device

    def extract(self, image: Image) -> FeatureMap:
        x = normalise_intensity(image.tensor(device=self.device), self.config)
        if image.num_channels == 1 and x.ndim == image.grid.ndim:
            x = x.unsqueeze(0)
        return FeatureMap([FeatureLevel(x, image.grid, "intensity")], source=image)


def make_intensity(config: IntensityConfig, context) -> IntensityBackbone:
    return IntensityBackbone(config, context.device)
