"""Fixtures of the maisi-dift tests: tiny random MAISI networks and small CT-like volumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

MANIFESTS = Path(__file__).resolve().parents[3] / ".." / "shared" / "reference" / "checkpoints"


@pytest.fixture
def manifest():
    """``manifest(name)``: key -> shape of an official checkpoint (skips when the file is absent)."""

    def load(name: str) -> dict[str, list[int]]:
        path = MANIFESTS / f"{name}.json"
        if not path.is_file():
            pytest.skip(f"checkpoint manifest {path} is not available")
        return json.loads(path.read_text())

    return load


@pytest.fixture
def tiny_config():
    """``tiny_config(**options)``: a maisi-dift config on tiny random networks."""
    from medfeat_maisi_dift.config import MaisiDiftConfig

    def make(**kw):
        base = dict(
            random_weights=True,
            architecture="tiny",
            size_multiple_vox=32,
            intensity="unit",
            autoencoder_num_splits=1,
        )
        return MaisiDiftConfig(**{**base, **kw})

    return make


@pytest.fixture
def tiny_backbone(tiny_config):
    """Tiny networks; every image starts from the same noise, so extractions are comparable."""
    from medfeat_maisi_dift.backbone import MaisiDiftBackbone

    return MaisiDiftBackbone(tiny_config(noise="per-image"), seed=3)


@pytest.fixture
def ct_image():
    """A smooth 3D volume in [0, 1] (numpy shape 30x36x40) on an oblique-free LPS grid."""
    from medfeat.geometry import Grid, Image

    rng = np.random.default_rng(0)
    coarse = torch.from_numpy(rng.random((1, 1, 6, 7, 8)).astype(np.float32))
    data = torch.nn.functional.interpolate(coarse, size=(30, 36, 40), mode="trilinear")[0, 0]
    grid = Grid.from_shape((30, 36, 40), spacing=(1.5, 1.2, 2.0), origin=(10.0, -5.0, 3.0))
    return Image(data.numpy(), grid, {"name": "ct"})


def write_layout(root: Path, cases=("0001", "0002"), n_points=30) -> Path:
    """A Learn2Reg LungCT layout: HU-like blocks, phase 1 = phase 0 shifted one voxel along k."""
    import SimpleITK as sitk

    rng = np.random.default_rng(0)
    for sub in ("imagesTr", "masksTr", "keypointsTr"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for case in cases:
        base = rng.uniform(-900, 200, (4, 5, 5))
        vol = np.kron(base, np.ones((6, 6, 6))).astype(np.float32)  # 24x30x30, HU-like
        kp = rng.uniform(3, 20, (n_points, 3))
        for phase, shift in ((0, 0.0), (1, 1.0)):
            img = sitk.GetImageFromArray(np.roll(vol, int(shift), axis=0))
            img.SetSpacing((1.5, 1.5, 2.5))
            img.SetOrigin((-20.0, 10.0, 5.0))
            sitk.WriteImage(img, str(root / "imagesTr" / f"LungCT_{case}_000{phase}.nii.gz"))
            pts = kp + np.array([0.0, 0.0, shift])  # ITK voxel x, y, z
            np.savetxt(root / "keypointsTr" / f"LungCT_{case}_000{phase}.csv", pts, delimiter=",")
        mask = sitk.GetImageFromArray(np.ones(vol.shape, np.uint8))
        mask.CopyInformation(img)
        sitk.WriteImage(mask, str(root / "masksTr" / f"LungCT_{case}_0000.nii.gz"))
    return root


@pytest.fixture
def make_layout():
    """``make_layout(root, cases=..., n_points=...)``: write a generated Learn2Reg LungCT layout."""
    return write_layout
