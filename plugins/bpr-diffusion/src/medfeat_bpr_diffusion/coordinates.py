"""Body-part coordinate providers and the helper that puts their maps on a network's grid."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medfeat.api import FeatureLevel, FeatureMap, Grid, Image
from medfeat_bpr_diffusion.config import BBoxCoordinatesConfig, ComponentSection
from medfeat_bpr_diffusion.preprocess import body_bbox_world


def build_provider(section: ComponentSection, context: Any) -> Any:
    """Build the coordinate provider named in a nested YAML section (any plugin may add one)."""
    from medfeat.api import get_registry

    entry = get_registry().get("coordinate_provider", section.name, key_path="coordinates.name")
    return entry.build(section.options, context)


def coordinates_on_grid(provider: Any, image: Image, grid: Grid) -> torch.Tensor:
    """The provider's coordinates of ``image`` resampled (world-aware, linear) onto ``grid``."""
    from medfeat.api import resample_level

    fmap = provider.coordinates(image)
    parts = [resample_level(level, grid).data.float() for level in fmap.levels]
    return torch.cat(parts, 0)


class BBoxCoordinates:
    """Weight-free departure: world x, y, z normalised to [0, 1] over the body's bounding box.

    Not the paper's regressor: a partial scan is normalised to its own body extent, so values are
    comparable between scans only when they cover the same body range.
    """

    channels = 3

    def __init__(self, config: BBoxCoordinatesConfig) -> None:
        self.config = config

    def coordinates(self, image: Image) -> FeatureMap:
        lo, hi = body_bbox_world(image, self.config.body_threshold_hu)
        s = self.config.stride_vox
        grid = image.grid
        if s > 1:
            grid = grid.with_shape_and_spacing(
                tuple(max(1, n // s) for n in grid.shape), tuple(sp * s for sp in grid.spacing)
            )
        axes = [np.arange(n, dtype=np.float64) for n in grid.shape]
        idx = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        world = grid.array_index_to_world(idx)
        norm = (world - lo) / np.maximum(hi - lo, 1e-6)
        data = torch.from_numpy(norm.T.reshape(3, *grid.shape).astype(np.float32))
        return FeatureMap([FeatureLevel(data, grid, "bbox-xyz")], source=image)


def make_bbox(config: BBoxCoordinatesConfig, context: Any) -> BBoxCoordinates:
    return BBoxCoordinates(config)
