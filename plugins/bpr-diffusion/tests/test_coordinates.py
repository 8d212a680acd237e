"""Coordinate providers: the weight-free box coordinates, Body Part Regression, and APE's geometry
(vox2vec dicom-canonical arrays, world positions of the coordinates), and no provider that runs
code from a file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from medfeat_bpr_diffusion.config import (
    APECoordinatesConfig,
    BBoxCoordinatesConfig,
    BPRCoordinatesConfig,
)
from medfeat_bpr_diffusion.coordinates import (
    APECoordinates,
    BBoxCoordinates,
    BPRCoordinates,
)
from medfeat_bpr_diffusion.networks import APEArchitecture, BodyPartRegressionNet

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


class _RunsCode:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_no_provider_loads_torch_export_programs_and_a_crafted_file_runs_nothing(tmp_path, make_ct):
    """``.pt2`` programs unpickle when loaded: the ``ape-exported`` provider is gone, and a crafted
    file given to ``ape`` is refused without running its payload."""
    from medfeat.plugins import get_registry

    names = set(get_registry().names("coordinate_provider"))
    assert "ape" in names and "ape-exported" not in names
    marker = tmp_path / "code-ran"
    torch.save({"state_dict": {"nn.fpn.stem.conv.weight": _RunsCode(marker)}}, tmp_path / "ape.pt2")
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        APECoordinates(APECoordinatesConfig(checkpoint=tmp_path / "ape.pt2"))
    assert not marker.exists()


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
