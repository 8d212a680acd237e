"""A toy plugin for the segmentation, pretraining and runner tests: blob images, a threshold head
and a statistics pretrainer."""

import pytest

BLOBS_PLUGIN = """
import json
import numpy as np
from pydantic import Field
from medfeat.api import ConfigModel, Grid, Image, SegmentationSample, hookimpl

class DataCfg(ConfigModel):
    n: int = Field(4, description="Number of images.")

class Blobs:
    def __init__(self, cfg):
        self.cfg = cfg
    def _sample(self, i):
        rng = np.random.default_rng(i)
        grid = Grid.from_shape((12, 12, 12), 2.0)
        lab = np.zeros(grid.shape, np.uint8)
        lab[3:9, 3:9, 3:9] = 1
        img = 0.3 + 0.4 * lab + 0.05 * rng.standard_normal(grid.shape)
        return SegmentationSample(f"s{i}", Image(img.astype(np.float32), grid), Image(lab, grid), group=str(i))
    def segmentation_samples(self, split):
        ids = {"train": [0, 1], "validation": [2], "test": [3], "all": [0, 1, 2, 3]}[split]
        return [self._sample(i) for i in ids]
    def images(self):
        return [self._sample(i).image for i in range(self.cfg.n)]
    def registration_cases(self):
        return iter(())

class Threshold:
    def __init__(self):
        self.t = None
    def fit(self, train, validation, out_dir, context, backbone=None):
        xs = np.concatenate([s.image.numpy().ravel() for s in train])
        ys = np.concatenate([s.labels.numpy().ravel() for s in train])
        cands = np.linspace(xs.min(), xs.max(), 50)
        dice = [2 * ((xs > c) & (ys > 0)).sum() / ((xs > c).sum() + (ys > 0).sum()) for c in cands]
        self.t = float(cands[int(np.argmax(dice))])
        (out_dir / "head.json").write_text(json.dumps({"t": self.t}))
        return {"train_dice": float(max(dice))}
    def load(self, checkpoint):
        self.t = json.loads(checkpoint.read_text())["t"]
    def predict(self, image, backbone=None):
        return Image((image.numpy() > self.t).astype(np.uint8), image.grid)

class Stats:
    def fit(self, dataset, out_dir, context):
        vals = np.concatenate([im.numpy().ravel() for im in dataset.images()])
        (out_dir / "stats.json").write_text(json.dumps({"mean": float(vals.mean())}))
        return {"mean": float(vals.mean())}

@hookimpl
def medfeat_register_datasets(register):
    register("blobs", lambda c, ctx: Blobs(c), config=DataCfg)

@hookimpl
def medfeat_register_segmentation_heads(register):
    register("threshold", lambda c, ctx: Threshold())

@hookimpl
def medfeat_register_pretrainers(register):
    register("stats", lambda c, ctx: Stats())
"""


@pytest.fixture
def blobs_source() -> str:
    """The toy plugin's source (``medfeat_blobs.py``), to vary it before installing it."""
    return BLOBS_PLUGIN


@pytest.fixture
def blobs_plugin(fake_distribution, blobs_source) -> None:
    """The toy plugin, installed as the distribution ``medfeat-blobs``."""
    fake_distribution(
        "medfeat-blobs", {"medfeat_blobs.py": blobs_source}, {"blobs": "medfeat_blobs"}
    )
