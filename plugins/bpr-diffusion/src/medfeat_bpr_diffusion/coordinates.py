"""Body-part coordinate providers, and the helper that puts their maps on a network's grid.

- ``bbox-normalised``: weight-free departure, world x, y, z over the body's bounding box.
- ``bpr-slice-score``: MIC-DKFZ Body Part Regression (bpreg, Apache-2.0), one score per slice.
  Preprocessing follows the reference: axial slices at 3.5 mm, 128 x 128, HU [-1000, 1500] ->
  [-1, 1]. The slice score, scaled, is broadcast over its slice as one coordinate channel.
- ``ape``: APE dense 3D coordinates (Goncharov et al., MIT), 3 per voxel at
  stride 4. APE is trained on arrays prepared by vox2vec's ``to_canonical_orientation``
  ("dicom-canonical"): array axis 0 runs towards posterior, axis 1 towards the patient's left,
  axis 2 towards inferior (slices last), at 1 x 1 x 1.5 mm, HU [-1000, 300] -> [0, 1]. The
  provider resamples the CT onto a grid with exactly that layout (LPS direction columns for i, j,
  k: -z, +x, +y), so the network sees APE's arrays and its output keeps its geometry: a stride-4
  grid over the same voxel box. It runs the published network
  (:class:`~medfeat_bpr_diffusion.networks.APENetwork`), loaded strictly, over sliding windows.
  (An ``ape-exported`` provider for ``torch.export`` programs was removed: loading a ``.pt2``
  unpickles, so a crafted file could run code.) Departure: APE's CLAHE contrast step is not
  applied.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medfeat.api import CheckpointError, FeatureLevel, FeatureMap, Grid, Image
from medfeat_bpr_diffusion.checkpoints import load_ape, load_bpr
from medfeat_bpr_diffusion.config import (
    APECoordinatesConfig,
    APEInputConfig,
    BBoxCoordinatesConfig,
    BPRCoordinatesConfig,
    ComponentSection,
)
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
        data = torch.from_numpy(normalised_world(grid, lo, hi))
        return FeatureMap([FeatureLevel(data, grid, "bbox-xyz")], source=image)


def normalised_world(grid: Grid, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``[3, *grid.shape]`` float32: world x, y, z of every voxel, mapped [lo, hi] -> [0, 1].

    The grid is affine, so each world coordinate is a sum of one ramp per array axis: computed
    channel by channel from broadcast ramps (float64), with one full-size float64 temporary at a
    time instead of the per-voxel index and world tables (about a fifth of the memory).
    """
    m = grid.array_index_to_world_matrix()
    out = np.empty((3, *grid.shape), np.float32)
    world = np.empty(grid.shape, np.float64)  # the one full-size temporary
    scale = np.maximum(hi - lo, 1e-6)
    for w in range(3):
        ramps = [
            (m[w, a] * np.arange(n, dtype=np.float64)).reshape(
                [-1 if b == a else 1 for b in range(3)]
            )
            for a, n in enumerate(grid.shape)
        ]
        plane = (ramps[0] + (m[w, 3] - lo[w])) + ramps[1]  # [n0, n1, 1]
        np.add(plane, ramps[2], out=world)
        world /= scale[w]
        out[w] = world
    return out


def make_bbox(config: BBoxCoordinatesConfig, context: Any) -> BBoxCoordinates:
    return BBoxCoordinates(config)


# ----------------------------------------------------------------------------- bpreg
class BPRCoordinates:
    """Slice scores of the MIC-DKFZ regressor as a one-channel coordinate map."""

    channels = 1

    def __init__(self, config: BPRCoordinatesConfig, device: str = "cpu") -> None:
        self.config, self.device = config, device
        self.net = load_bpr(config.checkpoint).to(device)

    def _grid(self, image: Image) -> Grid:
        lo, hi = image.grid.world_extent()
        centre = (lo + hi) / 2
        dz = float(abs(image.grid.direction @ np.asarray(image.grid.spacing))[2])
        nz = int(round((hi[2] - lo[2]) / dz)) + 1
        spacing = (3.5, 3.5, dz)
        origin = (centre[0] - 63.5 * 3.5, centre[1] - 63.5 * 3.5, lo[2])
        return Grid((nz, 128, 128), spacing, origin, np.eye(3))

    @torch.no_grad()
    def coordinates(self, image: Image) -> FeatureMap:
        from medfeat.api import resample_to_grid

        grid = self._grid(image)
        hu = resample_to_grid(image, grid, "linear", default_value=-1000.0).numpy()
        x = torch.from_numpy(np.clip((hu + 1000.0) / 2500.0, 0, 1) * 2 - 1).float()[:, None]
        scores = torch.cat(
            [self.net(b.to(self.device)).cpu() for b in x.split(self.config.batch_slices)]
        )[:, 0]
        data = (scores * self.config.score_scale)[None, :, None, None].expand(1, *grid.shape)
        return FeatureMap([FeatureLevel(data.contiguous(), grid, "bpr-score")], source=image)


def make_bpr(config: BPRCoordinatesConfig, context: Any) -> BPRCoordinates:
    return BPRCoordinates(config, context.device)


# ----------------------------------------------------------------------------- APE
# ITK (i, j, k) axes of vox2vec's dicom-canonical arrays in LPS: i (array axis 2) -> inferior,
# j (axis 1) -> patient left, k (axis 0) -> posterior
DICOM_CANONICAL = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])


def canonical_input(image: Image, c: APEInputConfig) -> tuple[torch.Tensor, Grid]:
    """The image as APE's input array (dicom-canonical, windowed to [0, 1]) and its grid."""
    from medfeat.api import resample_to_grid

    lo, hi = image.grid.world_extent()
    sx, sy, sz = (float(v) for v in c.spacing_mm)
    n = np.ceil((hi - lo) / np.array([sx, sy, sz])).astype(int) + 1
    n = (np.ceil(n / c.pad_multiple_vox) * c.pad_multiple_vox).astype(int)
    # array (posterior, left, inferior) = numpy (k, j, i); first voxel at min y, min x, max z
    grid = Grid(
        (int(n[1]), int(n[0]), int(n[2])), (sz, sx, sy), (lo[0], lo[1], hi[2]), DICOM_CANONICAL
    )
    hu = resample_to_grid(image, grid, "linear", default_value=c.background_hu).numpy()
    x = np.clip((hu - c.window_hu[0]) / (c.window_hu[1] - c.window_hu[0]), 0, 1)
    return torch.from_numpy(x.astype(np.float32)), grid


def run_network(net: Any, array: torch.Tensor, device: str) -> torch.Tensor:
    """APE on one canonical array ``[A0, A1, A2]`` -> ``[C, A0/s, A1/s, A2/s]`` (same layout)."""
    return net(array[None, None].to(device))[0].float().cpu()


def stride_grid(grid: Grid, stride: int, shape: tuple[int, ...]) -> Grid:
    return grid.with_shape_and_spacing(shape, tuple(sp * stride for sp in grid.spacing))


class APECoordinates:
    """Coordinates of the published APE network, over sliding windows on the canonical grid."""

    channels = 3
    stride = 4

    def __init__(self, config: APECoordinatesConfig, device: str = "cpu", net: Any = None) -> None:
        self.config, self.device = config, device
        self.net = (net if net is not None else load_ape(config.checkpoint)).to(device).eval()
        m = self.net.arch.max_stride
        if config.pad_multiple_vox % m or any(p % m for p in config.patch_size_vox or ()):
            raise CheckpointError(
                f"APE needs input sides that are multiples of {m}: pad_multiple_vox "
                f"{config.pad_multiple_vox}, patch_size_vox {config.patch_size_vox}.",
                remedy=f"Use multiples of {m}.",
            )

    @torch.no_grad()
    def coordinates(self, image: Image) -> FeatureMap:
        from medfeat_bpr_diffusion.tiling import sliding_average

        c, s = self.config, self.stride
        x, grid = canonical_input(image, c)
        if c.patch_size_vox is None:
            data = run_network(self.net, x, self.device)
        else:
            window = tuple(min(p, n) for p, n in zip(c.patch_size_vox, x.shape, strict=True))
            data = sliding_average(
                x.shape,
                window,
                c.overlap,
                [s],
                [self.channels],
                lambda sl: [run_network(self.net, x[sl], self.device)],
                align=self.net.arch.max_stride,
                stitching=c.stitching,
            )[0]
        level = FeatureLevel(data, stride_grid(grid, s, tuple(data.shape[1:])), "ape")
        return FeatureMap([level], source=image)


def make_ape(config: APECoordinatesConfig, context: Any) -> APECoordinates:
    return APECoordinates(config, context.device)
