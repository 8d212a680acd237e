"""APE-style dense 3D body-part coordinates from a user-supplied exported network (``torch.export``).

APE (Goncharov et al., MIT) predicts 3 coordinates in [0, 1] per voxel at stride 4 from CT at
1 x 1 x 1.5 mm, HU [-1000, 300] -> [0, 1]. Its released training code builds the network from a
separate library whose layout has changed between versions, and no manifest of released weights is
available here, so this provider loads a ``torch.export`` program of the trained network (saved
with ``torch.export.save``, spatial dimensions dynamic) from a local file instead of re-implementing
one particular version. Departure: APE's CLAHE
contrast step is not applied.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medfeat.components import FeatureLevel, FeatureMap
from medfeat.errors import CheckpointError
from medfeat.geometry import Grid, Image
from medfeat_bpr_diffusion.config import APECoordinatesConfig

APE_SOURCE = (
    "Train or obtain APE (github.com/mishgon/ape), export the network with torch.export.export "
    "(dynamic D, H, W) and torch.export.save(program, 'ape.pt2'); give that local file."
)


def load_exported(path: Any) -> torch.nn.Module:
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"APE program {path} does not exist (expected a torch.export .pt2 file).",
            remedy=APE_SOURCE,
        )
    try:
        return torch.export.load(str(path)).module()
    except Exception as exc:
        raise CheckpointError(
            f"{path} is not a loadable torch.export program ({type(exc).__name__}); a plain state dict "
            "or a truncated file cannot be used here.",
            remedy=APE_SOURCE,
        ) from None


class APECoordinates:
    """Dense coordinates of an exported APE network on a canonical (identity-direction) grid."""

    def __init__(self, config: APECoordinatesConfig, device: str = "cpu") -> None:
        self.config, self.device = config, device
        self.net = load_exported(config.checkpoint).to(device)
        self.channels = config.channels

    @torch.no_grad()
    def coordinates(self, image: Image) -> FeatureMap:
        from medfeat.io.resample import resample_to_grid

        c = self.config
        lo, hi = image.grid.world_extent()
        spacing = np.asarray(c.spacing_mm)
        size = np.ceil((hi - lo) / spacing).astype(int) + 1
        size = (np.ceil(size / c.pad_multiple_vox) * c.pad_multiple_vox).astype(int)
        grid = Grid(tuple(int(s) for s in size[::-1]), tuple(spacing), tuple(lo), np.eye(3))
        hu = resample_to_grid(image, grid, "linear", default_value=-1024.0).numpy()
        x = np.clip((hu - c.window_hu[0]) / (c.window_hu[1] - c.window_hu[0]), 0, 1)
        out = self.net(torch.from_numpy(x.astype(np.float32))[None, None].to(self.device))
        expected = tuple(n // c.output_stride_vox for n in grid.shape)
        if out.ndim != 5 or out.shape[1] != c.channels or tuple(out.shape[2:]) != expected:
            raise CheckpointError(
                f"The APE network returned shape {tuple(out.shape)}; expected "
                f"[1, {c.channels}, {', '.join(map(str, expected))}] (stride {c.output_stride_vox}).",
                remedy="Set channels / output_stride_vox to the exported network's, or re-export it.",
            )
        s = c.output_stride_vox
        out_grid = grid.with_shape_and_spacing(expected, tuple(sp * s for sp in grid.spacing))
        data = out[0].float().cpu()
        return FeatureMap([FeatureLevel(data, out_grid, "ape")], source=image)


def make_ape(config: APECoordinatesConfig, context: Any) -> APECoordinates:
    return APECoordinates(config, context.device)
