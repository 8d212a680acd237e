"""Coordinate providers: the weight-free box coordinates and the strict Body Part Regression loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from medfeat_bpr_diffusion.bpreg import BodyPartRegressionNet, BPRCoordinates
from medfeat_bpr_diffusion.config import BBoxCoordinatesConfig, BPRCoordinatesConfig
from medfeat_bpr_diffusion.coordinates import BBoxCoordinates

from medfeat.errors import CheckpointError


def test_bbox_coordinates_span_the_body_box_in_world_axes(ct_pair):
    image = ct_pair[0]  # direction diag(1, 1, -1): numpy axis 0 runs towards -z
    fmap = BBoxCoordinates(BBoxCoordinatesConfig()).coordinates(image)
    coords = fmap.levels[0].data
    assert coords.shape == (3, *image.grid.shape) and fmap.levels[0].grid.same_as(image.grid)
    body = image.numpy() > -500
    inside = coords[:, torch.from_numpy(body)]
    assert torch.allclose(inside.min(1).values, torch.zeros(3), atol=1e-5)
    assert torch.allclose(inside.max(1).values, torch.ones(3), atol=1e-5)
    z = coords[2, :, 20, 24]
    assert bool((z[1:] < z[:-1]).all())  # world z decreases along numpy axis 0 on this grid


@pytest.mark.slow
def test_public_bpr_weights_load_strictly_and_score_every_slice(
    tmp_path, make_ct, bpr_manifest, write_bpr
):
    assert dict(BodyPartRegressionNet().state_dict().items()).keys() == bpr_manifest.keys()
    assert {
        k: tuple(v.shape) for k, v in BodyPartRegressionNet().state_dict().items()
    } == bpr_manifest
    folder = write_bpr(tmp_path / "public_bpr_model")
    provider = BPRCoordinates(BPRCoordinatesConfig(checkpoint=folder))
    image = make_ct(shape=(3, 30, 30), spacing=5.0)[0]
    fmap = provider.coordinates(image)
    level = fmap.levels[0]
    assert level.data.shape == (1, *level.grid.shape) and level.grid.shape[1:] == (128, 128)
    assert level.grid.spacing[:2] == (3.5, 3.5)
    per_slice = level.data[0]
    assert torch.equal(per_slice, per_slice[:, :1, :1].expand_as(per_slice))  # one score per slice
    assert np.isfinite(per_slice.numpy()).all()


def test_bad_bpr_checkpoints_are_refused_with_the_source(tmp_path, bpr_manifest, write_bpr):
    with pytest.raises(CheckpointError, match="Zenodo"):
        BPRCoordinates(BPRCoordinatesConfig(checkpoint=tmp_path / "missing"))
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "model.pt").write_bytes(b"\x80\x02 truncated")
    with pytest.raises(CheckpointError, match="truncated"):
        BPRCoordinates(BPRCoordinatesConfig(checkpoint=tmp_path / "t"))
    wrong = {k: v for k, v in bpr_manifest.items() if k != "conv6.bias"}
    wrong["fc7.weight"] = (2, 512)
    write_bpr(tmp_path / "w", wrong)
    with pytest.raises(CheckpointError, match="1 missing.*wrong shape"):
        BPRCoordinates(BPRCoordinatesConfig(checkpoint=tmp_path / "w"))
    torch.save({"encoder.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a Body Part Regression"):
        BPRCoordinates(BPRCoordinatesConfig(checkpoint=tmp_path / "other.pt"))


class _TinyAPE(torch.nn.Module):
    """Stride-4 network with APE's interface: [1, 1, D, H, W] -> [1, 3, D/4, H/4, W/4] in [0, 1]."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 3, 4, stride=4)

    def forward(self, x):
        return torch.sigmoid(self.conv(x))


def test_ape_exported_provider_gives_dense_coordinates_on_a_world_grid(tmp_path, make_ct):
    from medfeat_bpr_diffusion.ape import APEExportedCoordinates as APECoordinates
    from medfeat_bpr_diffusion.config import APEExportedConfig as APECoordinatesConfig

    torch.manual_seed(0)
    from torch.export import Dim, export

    dims = {"x": {i: 4 * Dim(f"n{i}", min=1, max=128) for i in (2, 3, 4)}}
    program = export(_TinyAPE(), (torch.zeros(1, 1, 8, 8, 8),), dynamic_shapes=dims)
    torch.export.save(program, str(tmp_path / "ape.pt2"))
    image = make_ct(shape=(6, 20, 24), spacing=2.0)[0]
    cfg = APECoordinatesConfig(
        checkpoint=tmp_path / "ape.pt2", spacing_mm=(2.0, 2.0, 3.0), pad_multiple_vox=8
    )
    level = APECoordinates(cfg).coordinates(image).levels[0]
    assert level.data.shape[0] == 3 and level.grid.spacing == (12.0, 8.0, 8.0)  # ITK i: the slices
    assert (
        level.data.shape[1:] == level.grid.shape and ((level.data >= 0) & (level.data <= 1)).all()
    )
    # the output grid covers the image's world box
    lo, hi = image.grid.world_extent()
    glo, ghi = level.grid.world_extent()
    half = np.abs(level.grid.direction) @ np.array(level.grid.spacing) / 2  # in world axes
    assert (glo <= lo + half).all() and (ghi >= hi - half).all()
    with pytest.raises(CheckpointError, match="expected \\[1, 24"):
        APECoordinates(cfg.model_copy(update={"channels": 24})).coordinates(image)
    torch.save(_TinyAPE().state_dict(), tmp_path / "state.pt")
    with pytest.raises(CheckpointError, match="torch.export program"):
        APECoordinates(cfg.model_copy(update={"checkpoint": tmp_path / "state.pt"}))
