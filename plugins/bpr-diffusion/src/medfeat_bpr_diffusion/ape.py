"""APE dense 3D body-part coordinates (Goncharov et al., MIT) as coordinate providers.

APE predicts 3 coordinates per voxel at stride 4. It is trained on arrays prepared by vox2vec's
``to_canonical_orientation`` ("dicom-canonical"): array axis 0 runs towards posterior, axis 1
towards the patient's left, axis 2 towards inferior (slices last), at 1 x 1 x 1.5 mm, HU
[-1000, 300] -> [0, 1]. Both providers resample the CT onto a grid with exactly that layout
(LPS direction columns for i, j, k: -z, +x, +y), so the network sees APE's arrays and its output
keeps its geometry: a stride-4 grid over the same voxel box.

- ``ape``: the published network (:mod:`medfeat_bpr_diffusion.ape_net`) loaded strictly from a
  local Lightning checkpoint of APE's training or a plain state dict; sliding windows over large
  scans.
- ``ape-exported``: any APE-like network exported by the user with ``torch.export`` (for revisions
  whose layout differs from the published one), fed the same arrays.

Departure: APE's CLAHE contrast step is not applied.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medfeat.api import CheckpointError, FeatureLevel, FeatureMap, Grid, Image
from medfeat_bpr_diffusion.config import APECoordinatesConfig, APEExportedConfig, APEInputConfig

# ITK (i, j, k) axes of vox2vec's dicom-canonical arrays in LPS: i (array axis 2) -> inferior,
# j (axis 1) -> patient left, k (axis 0) -> posterior
DICOM_CANONICAL = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])
APE_SOURCE = (
    "APE (github.com/mishgon/ape, MIT) publishes its training code; train it (or obtain a trained "
    "checkpoint from its authors) and give the local Lightning .ckpt (or the network's state dict)."
)
APE_EXPORT_SOURCE = (
    "Export a trained APE network with torch.export.export (dynamic spatial sizes) and "
    "torch.export.save(program, 'ape.pt2'); give that local file."
)


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


def load_ape(path: Any) -> torch.nn.Module:
    """The published APE network with weights from a local file, loaded with ``strict=True``."""
    from medfeat.api import load_state_dict_strict
    from medfeat_bpr_diffusion.ape_net import APENetwork
    from medfeat_bpr_diffusion.checkpoints import state_dict_with

    path = Path(path)  # a Lightning .ckpt of APE's training or a state dict of its network
    state = state_dict_with(path, "fpn.stem.conv.weight", "APE", APE_SOURCE)
    # Lightning: the network lives under `nn.`, the learned scale beside it
    state = {k.removeprefix("nn."): v for k, v in state.items()}
    net = APENetwork()
    what = "APE (ConvNeXt-FPN U-Net, published configuration)"
    load_state_dict_strict(net, state, what=what, path=path)
    return net.eval()


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


def load_exported(path: Any) -> torch.nn.Module:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"APE program {path} does not exist (expected a torch.export .pt2 file).",
            remedy=APE_EXPORT_SOURCE,
        )
    try:
        return torch.export.load(str(path)).module()
    except Exception as exc:
        raise CheckpointError(
            f"{path} is not a loadable torch.export program ({type(exc).__name__}); a plain state dict "
            "or a truncated file cannot be used here (the `ape` provider loads state dicts).",
            remedy=APE_EXPORT_SOURCE,
        ) from None


class APEExportedCoordinates:
    """Dense coordinates of a user-exported APE-like network (whole volume at once)."""

    def __init__(self, config: APEExportedConfig, device: str = "cpu") -> None:
        self.config, self.device = config, device
        self.net = load_exported(config.checkpoint).to(device)
        self.channels = config.channels

    @torch.no_grad()
    def coordinates(self, image: Image) -> FeatureMap:
        c, s = self.config, self.config.output_stride_vox
        x, grid = canonical_input(image, c)
        data = run_network(self.net, x, self.device)
        expected = (c.channels, *(n // s for n in grid.shape))
        if tuple(data.shape) != expected:
            raise CheckpointError(
                f"The APE network returned {data.shape[0]} channels on "
                f"{tuple(data.shape[1:])}; expected [1, {', '.join(map(str, expected))}] "
                f"(stride {s}).",
                remedy="Set channels / output_stride_vox to the exported network's, or re-export it.",
            )
        level = FeatureLevel(data, stride_grid(grid, s, tuple(data.shape[1:])), "ape")
        return FeatureMap([level], source=image)


def make_ape(config: APECoordinatesConfig, context: Any) -> APECoordinates:
    return APECoordinates(config, context.device)


def make_ape_exported(config: APEExportedConfig, context: Any) -> APEExportedCoordinates:
    return APEExportedCoordinates(config, context.device)
