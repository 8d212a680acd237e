"""MIC-DKFZ Body Part Regression (bpreg, Apache-2.0) as a coordinate provider: one score per slice.

The architecture is the published one (VGG16 convolutional trunk with a 1-channel first conv without
bias, ``conv6`` 1x1 conv, ReLU, global mean, ``fc7`` linear), so the public ``model.pt`` loads
strictly. Preprocessing follows the reference: axial slices at 3.5 mm, 128 x 128, HU [-1000, 1500]
-> [-1, 1]. The slice score, scaled, is broadcast over its slice as one coordinate channel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medfeat.api import FeatureLevel, FeatureMap, Grid, Image, load_state_dict_strict
from medfeat_bpr_diffusion.checkpoints import state_dict_with
from medfeat_bpr_diffusion.config import BPRCoordinatesConfig

VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
BPR_SOURCE = (
    "Weights: the public Body Part Regression model of MIC-DKFZ (github.com/MIC-DKFZ/"
    "BodyPartRegression, Zenodo record 5113483, folder public_bpr_model/ with model.pt); download "
    "it yourself and give its local path."
)


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


def load_bpr(path: Path) -> BodyPartRegressionNet:
    """The public ``model.pt`` (a state dict, or a Lightning checkpoint holding one), strictly."""
    path = Path(path)
    file = path / "model.pt" if path.is_dir() else path
    state = state_dict_with(file, "fc7.", "Body Part Regression", BPR_SOURCE)
    net = BodyPartRegressionNet()
    load_state_dict_strict(net, state, what="Body Part Regression (VGG16)", path=file)
    return net.eval()


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
