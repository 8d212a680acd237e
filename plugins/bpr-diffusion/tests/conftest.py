"""Fixtures of the bpr-diffusion tests: a synthetic CT with organs and tiny configs."""

from __future__ import annotations

import numpy as np
import pytest

from medfeat.geometry import Grid, Image

TINY_UNET = {
    "base_channels": 4,
    "channel_mults": [1, 2],
    "num_res_blocks": 1,
    "attention_heads": 1,
    "attention_head_channels": 4,
    "groups": 2,
}


def synthetic_ct(shape=(20, 40, 48), spacing=2.5, flip=True, seed=0) -> tuple[Image, Image]:
    """An elliptic 'body' (HU ~0) in air with two 'organs' (labels 1, 2) of distinct HU."""
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    cj, ci = shape[1] / 2, shape[2] / 2
    body = ((j - cj) / (0.42 * shape[1])) ** 2 + ((i - ci) / (0.42 * shape[2])) ** 2 < 1
    organ1 = ((j - cj + 4) / 6) ** 2 + ((i - ci - 8) / 7) ** 2 + ((k - shape[0] / 2) / 12) ** 2 < 1
    organ2 = ((j - cj - 5) / 5) ** 2 + ((i - ci + 9) / 5) ** 2 < 1
    hu = np.where(body, 0.0, -1000.0) + rng.normal(0, 10, shape)
    hu[organ1 & body] = 200.0
    hu[organ2 & body] = -300.0
    labels = np.zeros(shape, np.int16)
    labels[organ1 & body] = 1
    labels[organ2 & body] = 2
    direction = np.diag([1.0, 1.0, -1.0]) if flip else np.eye(3)
    grid = Grid(shape, (spacing,) * 3, (-30.0, 12.0, 40.0), direction)
    return Image(hu.astype(np.float32), grid, {"name": "synthetic-ct"}), Image(labels, grid)


@pytest.fixture
def ct_pair():
    return synthetic_ct()


@pytest.fixture
def ct_files(tmp_path):
    """The synthetic CT and its labels written as NIfTI files."""
    from medfeat.io.images import write_image

    image, labels = synthetic_ct()
    img_path, lab_path = tmp_path / "ct.nii.gz", tmp_path / "seg.nii.gz"
    write_image(image, img_path)
    write_image(labels, lab_path)
    return img_path, lab_path


@pytest.fixture
def context():
    import torch

    from medfeat.context import RunContext

    torch.set_num_threads(1)
    return RunContext(device="cpu", seed=0)


@pytest.fixture
def tiny_unet() -> dict:
    return dict(TINY_UNET)


@pytest.fixture
def make_ct():
    return synthetic_ct


# Every key and shape of the public bpreg model.pt (VGG16 trunk with a 1-channel, bias-free first
# conv; conv6 1x1; fc7), written out from the published architecture (no shared manifest exists).
_CONVS = [(0, 1, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256),
          (14, 256, 256), (17, 256, 512), (19, 512, 512), (21, 512, 512), (24, 512, 512),
          (26, 512, 512), (28, 512, 512)]  # fmt: skip
BPR_MANIFEST = {f"model.{i}.weight": (o, c, 3, 3) for i, c, o in _CONVS}
BPR_MANIFEST |= {f"model.{i}.bias": (o,) for i, c, o in _CONVS if i != 0}
BPR_MANIFEST |= {
    "conv6.weight": (512, 512, 1, 1),
    "conv6.bias": (512,),
    "fc7.weight": (1, 512),
    "fc7.bias": (1,),
}


@pytest.fixture
def bpr_manifest() -> dict:
    return dict(BPR_MANIFEST)


@pytest.fixture
def write_bpr():
    """Write random weights with the given key -> shape manifest as ``folder/model.pt``."""
    import torch

    def write(folder, manifest=BPR_MANIFEST):
        folder.mkdir(parents=True, exist_ok=True)
        gen = torch.Generator().manual_seed(0)
        state = {k: torch.randn(s, generator=gen) * 0.05 for k, s in manifest.items()}
        torch.save(state, folder / "model.pt")
        return folder

    return write
