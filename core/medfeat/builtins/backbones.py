"""Built-in weight-free backbones."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from medfeat.components import FeatureLevel, FeatureMap
from medfeat.geometry import Image


class IntensityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    normalise: Literal["none", "minmax", "zscore", "window", "percentile"] = Field(
        "minmax",
        description="Intensity mapping: none, minmax or percentile to [0, 1], zscore, or window "
        "(window_min..window_max to [0, 1]).",
    )
    window_min: float = Field(
        -1000.0, description="Lower bound for `window` (image units, e.g. HU)."
    )
    window_max: float = Field(1000.0, description="Upper bound for `window` (image units).")
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


class MindConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    radius_vox: int = Field(2, ge=1, description="Patch radius of the self-similarity distances.")
    dilation_vox: int = Field(
        2, ge=1, description="Distance between the six-neighbourhood samples."
    )
    smoothing_sigma_vox: float = Field(
        0.0, ge=0, description="Gaussian pre-smoothing of the image."
    )
    normalise: Literal["none", "minmax", "zscore", "window", "percentile"] = Field(
        "none", description="Intensity mapping before the descriptors, as in `intensity`."
    )
    window_min: float = Field(
        -1000.0, description="Lower bound for `window` (image units, e.g. HU)."
    )
    window_max: float = Field(1000.0, description="Upper bound for `window` (image units).")
    context_pooling_vox: list[int] = Field(
        [],
        description="Extra coarser levels: the descriptors average-pooled by each factor (e.g. "
        "[3, 6]), each on its own grid. Adds context for point matching; registration fuses them.",
    )

    @field_validator("context_pooling_vox")
    @classmethod
    def _factors_above_one(cls, v: list[int]) -> list[int]:
        if any(f < 2 for f in v):
            raise ValueError("pooling factors must be integers >= 2")
        return v


def pooled_level(level: FeatureLevel, factor: int, name: str) -> FeatureLevel:
    """``level`` average-pooled by ``factor`` (floor), on the grid whose voxels are the pooled
    blocks: spacing times ``factor``, first block corner on the first voxel corner."""
    import torch.nn.functional as F

    data = F.avg_pool3d(level.data[None], factor, stride=factor)[0]
    spacing = tuple(s * factor for s in level.grid.spacing)
    return FeatureLevel(
        data, level.grid.with_shape_and_spacing(tuple(data.shape[1:]), spacing), name
    )


class MindBackbone:
    """MIND-SSC: 12 self-similarity-context channels per voxel (Heinrich et al. 2013), weight-free."""

    def __init__(self, config: MindConfig, device: str = "cpu") -> None:
        self.config, self.device = config, device

    def extract(self, image: Image) -> FeatureMap:
        import torch

        from medfeat.engine.mind import gaussian_smooth, mind_ssc

        c = self.config
        if image.grid.ndim != 3:
            from medfeat.errors import DataError

            raise DataError(f"MIND-SSC needs a 3D image; {image.name} is {image.grid.ndim}D.")
        norm = IntensityConfig(
            normalise=c.normalise, window_min=c.window_min, window_max=c.window_max
        )
        x = normalise_intensity(image.tensor(device=self.device), norm)[None, None]
        with torch.no_grad():
            if c.smoothing_sigma_vox > 0:
                x = gaussian_smooth(x, c.smoothing_sigma_vox)
            feats = mind_ssc(x, radius=c.radius_vox, dilation=c.dilation_vox)[0]
            levels = [FeatureLevel(feats, image.grid, "mind-ssc")]
            for f in c.context_pooling_vox:
                levels.append(pooled_level(levels[0], f, f"mind-ssc pooled x{f}"))
        return FeatureMap(levels, source=image)

    def estimate_memory_bytes(self, image: Image) -> int:
        # 12 output channels plus about as many intermediate shifted copies, float32
        return 4 * image.grid.num_voxels * 40

    memory_remedy = (
        "Crop or downsample the images (e.g. to 2 mm), or run on a machine with more memory."
    )


def make_mind(config: MindConfig, context) -> MindBackbone:
    return MindBackbone(config, context.device)


class PrecomputedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    features: dict[str, list[str]] = Field(
        description="Image file -> its feature files, one per level (vector or multi-channel images)."
    )


class PrecomputedBackbone:
    """Features computed elsewhere (any backbone, any tool), read from files with their own geometry.

    Each level is a vector image whose grid may differ from the input image's (e.g. 1/4 resolution);
    the file's own spacing/origin/direction place it in world space.
    """

    def __init__(self, config: PrecomputedConfig, device: str = "cpu") -> None:
        from pathlib import Path

        self.device = device
        self.features = {str(Path(k).resolve()): v for k, v in config.features.items()}

    def extract(self, image: Image) -> FeatureMap:
        from pathlib import Path

        from medfeat.errors import InputFileError
        from medfeat.io.images import read_image

        key = str(Path(image.meta.get("path", "")).resolve())
        if key not in self.features:
            raise InputFileError(
                f"No precomputed features are listed for {image.name}.",
                remedy=f"Add it under backbone.features (listed: {', '.join(self.features) or 'none'}).",
            )
        levels = []
        for i, path in enumerate(self.features[key]):
            feat = read_image(path)
            data = feat.tensor(device=self.device)
            if feat.num_channels == 1 and data.ndim == feat.grid.ndim:
                data = data[None]
            levels.append(FeatureLevel(data, feat.grid, f"level{i}"))
        return FeatureMap(levels, source=image)


def make_precomputed(config: PrecomputedConfig, context) -> PrecomputedBackbone:
    return PrecomputedBackbone(config, context.device)
