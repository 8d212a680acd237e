"""The published APE network: strict loading of its checkpoint formats, and APE's geometry convention."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from medfeat_bpr_diffusion.ape import APECoordinates, load_ape
from medfeat_bpr_diffusion.ape_net import APEArchitecture, APENetwork
from medfeat_bpr_diffusion.config import APECoordinatesConfig

from medfeat.errors import CheckpointError


def _lightning_checkpoint(net: APENetwork) -> dict:
    """What APE's Lightning training writes: the network under `nn.`, the scale beside it."""
    state = {(k if k == "scale" else f"nn.{k}"): v for k, v in net.state_dict().items()}
    return {"state_dict": state, "epoch": 3, "global_step": 1200, "pytorch-lightning_version": "2"}


def test_published_configuration_has_the_papers_pyramid():
    net = APENetwork()
    keys = net.state_dict()
    assert keys["fpn.stem.conv.weight"].shape == (95, 1, 4, 4, 4)  # 96 - 1 mask channel
    assert [len(s.blocks) for s in net.fpn.left_stages] == [2, 2, 8]
    assert [len(s.blocks) for s in net.fpn.right_stages] == [1, 1, 1]
    assert len(net.fpn.bottom_stage.blocks) == 3
    assert keys["fpn.left_stages.0.blocks.0.conv_2.weight"].shape == (384, 96, 1, 1, 1)
    assert [keys[f"head.convs.{i}.weight"].shape[1] for i in range(4)] == [96, 192, 384, 768]
    assert "head.convs.0.bias" in keys and "head.convs.1.bias" not in keys
    assert keys["scale"].shape == (3, 1, 1, 1)


@pytest.mark.parametrize("form", ["lightning", "plain"])
def test_full_size_checkpoint_loads_strictly_and_reproduces_the_network(tmp_path, form):
    torch.manual_seed(0)
    net = APENetwork()
    for p in net.parameters():  # no layer-scale near zero: every block must matter
        p.data.normal_(0, 0.05)
    obj = _lightning_checkpoint(net) if form == "lightning" else net.state_dict()
    torch.save(obj, tmp_path / "ape.ckpt")
    loaded = load_ape(tmp_path / "ape.ckpt")
    x = torch.rand(1, 1, 32, 32, 64)
    with torch.no_grad():
        out = loaded(x)
        assert out.shape == (1, 3, 8, 8, 16)
        assert torch.equal(out, net.eval()(x))
    unscaled = out / net.scale.detach()[None]  # sigmoid output, times the learned scale
    assert ((unscaled >= 0) & (unscaled <= 1)).all()


def test_mismatched_or_foreign_checkpoints_are_refused_with_what_differs(tmp_path):
    net = APENetwork(APEArchitecture(widths=(8, 16, 32, 64), depths=((1, 1),) * 3, bottom_depth=1))
    torch.save(_lightning_checkpoint(net), tmp_path / "small.ckpt")
    with pytest.raises(CheckpointError, match="missing.*wrong shape"):
        load_ape(tmp_path / "small.ckpt")
    with pytest.raises(CheckpointError, match="github.com/mishgon/ape"):
        load_ape(tmp_path / "absent.ckpt")
    torch.save({"encoder.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an APE checkpoint"):
        load_ape(tmp_path / "other.pt")
    (tmp_path / "cut.ckpt").write_bytes((tmp_path / "small.ckpt").read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated"):
        load_ape(tmp_path / "cut.ckpt")


class _Pool4(torch.nn.Module):
    """A stand-in with APE's interface whose output is known: 4x4x4 mean of the input, 3 channels."""

    arch = APEArchitecture(stem_stride=4, depths=((1, 1),))  # max stride 8

    def forward(self, x):
        return F.avg_pool3d(x, 4).repeat(1, 3, 1, 1, 1)


def _ramp_ct(make_ct, axis: int):
    """CT whose HU rises along world LPS axis ``axis`` (0 = x, 1 = y, 2 = z)."""
    image = make_ct(shape=(12, 20, 24), spacing=2.0)[0]
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in image.grid.shape], indexing="ij"), -1)
    world = image.grid.array_index_to_world(idx.reshape(-1, 3)).reshape(*image.grid.shape, 3)
    hu = -1000.0 + 20.0 * (world[..., axis] - world[..., axis].min())
    return type(image)(hu.astype(np.float32), image.grid, {"name": f"ramp{axis}"})


def _config(**kw):
    base = {"checkpoint": "unused.ckpt", "spacing_mm": (2.0, 2.0, 2.0),
            "window_hu": (-1000.0, 0.0), "pad_multiple_vox": 8, "patch_size_vox": None}  # fmt: skip
    return APECoordinatesConfig(**{**base, **kw})


class _Recorder(_Pool4):
    def forward(self, x):
        self.seen = x[0, 0].clone()
        return super().forward(x)


def test_the_network_sees_vox2vec_dicom_canonical_arrays(make_ct):
    """APE's arrays: axis 0 towards posterior (+y), axis 1 towards left (+x), axis 2 inferior (-z)."""
    seen = []
    for axis in range(3):
        net = _Recorder()
        APECoordinates(_config(), net=net).coordinates(_ramp_ct(make_ct, axis))
        seen.append(net.seen)
    for world_axis, (array_axis, sign) in enumerate([(1, 1), (0, 1), (2, -1)]):
        arr = seen[world_axis]
        inside = arr[(arr > 0.02) & (arr < 0.98)]
        assert inside.numel() > 10
        profile = arr.movedim(array_axis, 0).flatten(1)
        steps = profile[1:] - profile[:-1]  # along the expected array axis
        body = (profile[1:] > 0.02) & (profile[:-1] > 0.02) & (profile[1:] < 0.98)
        assert (sign * steps[body] > 0).all(), (world_axis, array_axis)
        for other in {0, 1, 2} - {array_axis}:  # constant along the other axes (inside the image)
            prof = arr.movedim(other, 0).flatten(1)
            both = (prof[1:] > 0.02) & (prof[:-1] > 0.02) & (prof[1:] < 0.98) & (prof[:-1] < 0.98)
            assert torch.allclose(prof[1:][both], prof[:-1][both], atol=1e-4), (world_axis, other)


@pytest.mark.parametrize("patch", [None, (8, 16, 8)])
def test_coordinates_land_at_the_right_world_positions(make_ct, patch):
    image = _ramp_ct(make_ct, 0)
    level = APECoordinates(_config(patch_size_vox=patch), net=_Pool4()).coordinates(image).levels[0]
    grid = level.grid
    expected_dir = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]])
    assert np.allclose(grid.direction, expected_dir)  # i: inferior, j: left, k: posterior
    assert grid.spacing == (8.0, 8.0, 8.0) and level.data.shape == (3, *grid.shape)
    # the value at each coarse voxel is the windowed HU at its world x (the ramp is linear in x)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij"), -1)
    world = grid.array_index_to_world(idx.reshape(-1, 3))
    lo, hi = image.grid.world_extent()
    inside = np.all((world >= lo + 4) & (world <= hi - 4), axis=1)
    assert inside.sum() >= 4
    expected = np.clip(20.0 * (world[:, 0] - lo[0]) / 1000.0, 0, 1)
    got = level.data[0].numpy().reshape(-1)
    assert np.allclose(got[inside], expected[inside], atol=0.02)


def test_sliding_windows_need_multiples_of_the_networks_stride():
    cfg = _config(patch_size_vox=(8, 12, 8))
    with pytest.raises(CheckpointError, match="multiples of 8"):
        APECoordinates(cfg, net=_Pool4())
