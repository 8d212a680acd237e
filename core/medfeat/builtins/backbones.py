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
    """Options of MIND-SSC; lengths in mm, turned into whole voxels along each image axis."""

    model_config = ConfigDict(extra="forbid")
    radius_mm: float = Field(
        4.0,
        gt=0,
        le=20,
        allow_inf_nan=False,
        description="Patch radius of the self-similarity distances (mm; at least one voxel).",
    )
    dilation_mm: float = Field(
        4.0,
        gt=0,
        le=20,
        allow_inf_nan=False,
        description="Distance of the six-neighbourhood samples from the centre (mm; at least one "
        "voxel).",
    )
    smoothing_sigma_mm: float = Field(
        0.0,
        ge=0,
        le=20,
        allow_inf_nan=False,
        description="Gaussian pre-smoothing of the image (standard deviation, mm; 0 = none).",
    )
    normalise: Literal["none", "minmax", "zscore", "window", "percentile"] = Field(
        "none", description="Intensity mapping before the descriptors, as in `intensity`."
    )
    window_min: float = Field(
        -1000.0, description="Lower bound for `window` (image units, e.g. HU)."
    )
    window_max: float = Field(1000.0, description="Upper bound for `window` (image units).")
    context_pooling_mm: list[float] = Field(
        [],
        description="Extra coarser levels: the descriptors average-pooled to each spacing (mm, "
        "e.g. [6, 12]; a whole number of voxels per axis), each on its own grid. Adds context "
        "for point matching; registration fuses them.",
    )

    @field_validator("context_pooling_mm")
    @classmethod
    def _positive_lengths(cls, v: list[float]) -> list[float]:
        if any(not (0 < f <= 200) for f in v):
            raise ValueError("pooling spacings must be lengths in mm between 0 and 200")
        return v


def voxels_along_axes(length_mm: float, grid) -> tuple[int, ...]:
    """``length_mm`` as whole voxels (at least one) along each array axis (k, j, i) of ``grid``."""
    return tuple(max(1, int(round(length_mm / s))) for s in grid.spacing_array_order)


def pooled_level(level: FeatureLevel, factor: int | tuple[int, ...], name: str) -> FeatureLevel:
    """``level`` average-pooled by ``factor`` voxels (one, or one per array axis; floor), on the
    grid whose voxels are the pooled blocks: spacing times ``factor``, first block corner on the
    first voxel corner."""
    import torch.nn.functional as F

    factors = (factor,) * 3 if isinstance(factor, int) else tuple(factor)
    data = F.avg_pool3d(level.data[None], factors, stride=factors)[0]
    spacing = tuple(s * f for s, f in zip(level.grid.spacing, factors[::-1], strict=True))
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
        grid = image.grid
        with torch.no_grad():
            if c.smoothing_sigma_mm > 0:
                sigmas = [c.smoothing_sigma_mm / s for s in grid.spacing_array_order]
                x = gaussian_smooth(x, sigmas)
            radius = voxels_along_axes(c.radius_mm, grid)
            dilation = voxels_along_axes(c.dilation_mm, grid)
            feats = mind_ssc(x, radius=radius, dilation=dilation)[0]
            levels = [FeatureLevel(feats, grid, "mind-ssc")]
            for f in c.context_pooling_mm:
                factors = voxels_along_axes(f, grid)
                levels.append(pooled_level(levels[0], factors, f"mind-ssc pooled to {f:g} mm"))
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
