"""Segmentation (train/infer) and pretraining pipelines drive plugin components end to end."""

import json

from medfeat.cli.main import main

PLUGIN = """
import json
import numpy as np
from pydantic import BaseModel
from medfeat import hookimpl
from medfeat.components import SegmentationSample
from medfeat.geometry import Grid, Image

class DataCfg(BaseModel):
    n: int = 4

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


def test_segmentation_train_then_infer(fake_distribution, tmp_path):
    fake_distribution("medfeat-blobs", {"medfeat_blobs.py": PLUGIN}, {"blobs": "medfeat_blobs"})
    train = tmp_path / "train.yaml"
    train.write_text(
        "kind: segmentation\nmode: train\ndata: {name: blobs}\nhead: {name: threshold}\n"
    )
    assert main(["-q", "run", str(train), "--out", str(tmp_path / "t")]) == 0
    assert json.loads((tmp_path / "t" / "metrics.json").read_text())["train_dice"] > 0.95
    infer = tmp_path / "infer.yaml"
    infer.write_text(
        f"kind: segmentation\nmode: infer\ndata: {{name: blobs}}\nhead: {{name: threshold}}\ncheckpoint: {tmp_path / 't' / 'head.json'}\n"
    )
    assert main(["-q", "run", str(infer), "--out", str(tmp_path / "i")]) == 0
    metrics = json.loads((tmp_path / "i" / "metrics.json").read_text())
    assert metrics["cases"]["s3"]["dice"]["1"] > 0.95
    assert (tmp_path / "i" / "s3" / "labels.nii.gz").is_file()


def test_pretraining_pipeline(fake_distribution, tmp_path):
    fake_distribution("medfeat-blobs", {"medfeat_blobs.py": PLUGIN}, {"blobs": "medfeat_blobs"})
    p = tmp_path / "pre.yaml"
    p.write_text("kind: pretraining\ndata: {name: blobs, n: 3}\npretrainer: {name: stats}\n")
    assert main(["-q", "run", str(p), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "stats.json").is_file()
    assert json.loads((tmp_path / "o" / "provenance.json").read_text())["config"]["data"] == {
        "name": "blobs",
        "n": 3,
    }


def test_infer_scores_only_the_labels_the_head_segments(fake_distribution, tmp_path):
    """Ground truth with more labels than the head knows: Dice of the head's labels only."""
    plugin = PLUGIN.replace(
        "lab[3:9, 3:9, 3:9] = 1\n", "lab[3:9, 3:9, 3:9] = 1\n        lab[0:2, 0:2, 0:2] = 2\n"
    ).replace(
        'register("threshold", lambda c, ctx: Threshold())',
        'register("threshold", lambda c, ctx: Threshold())\n'
        '    register("threshold-label-1", lambda c, ctx: LabelOne())',
    )
    plugin += "\nclass LabelOne(Threshold):\n    label_ids = [1]\n"
    fake_distribution("medfeat-blobs", {"medfeat_blobs.py": plugin}, {"blobs": "medfeat_blobs"})
    head = tmp_path / "head.json"
    head.write_text(json.dumps({"t": 0.5}))
    for name, expected in (("threshold", {"1", "2"}), ("threshold-label-1", {"1"})):
        infer = tmp_path / f"{name}.yaml"
        infer.write_text(
            "kind: segmentation\nmode: infer\ndata: {name: blobs}\n"
            f"head: {{name: {name}}}\ncheckpoint: {head}\n"
        )
        assert main(["-q", "run", str(infer), "--out", str(tmp_path / name)]) == 0
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        case = metrics["cases"]["s3"]
        assert set(case["dice"]) == expected
        assert case["mean_dice"] == sum(case["dice"].values()) / len(expected)
        assert metrics["mean_dice"] == case["mean_dice"]


NESTED = """
from pydantic import BaseModel, Field
from medfeat import hookimpl
from medfeat.config.schema import ComponentRef, nested_component

class InnerCfg(BaseModel, extra="forbid"):
    stride: int = 1

class Deeper(BaseModel, extra="forbid"):
    helper: nested_component("pretrainer") = Field(default_factory=lambda: ComponentRef(name="inner"))

class OuterCfg(BaseModel, extra="forbid"):
    inner: nested_component("pretrainer") = Field(default_factory=lambda: ComponentRef(name="inner"))
    deeper: Deeper = Field(default_factory=Deeper)
    maybe: nested_component("pretrainer") | None = None
    several: list[nested_component("pretrainer")] = []
    named: dict[str, nested_component("pretrainer")] = {}

@hookimpl
def medfeat_register_pretrainers(register):
    register("inner", lambda c, ctx: None, config=InnerCfg)
    register("outer", lambda c, ctx: None, config=OuterCfg)
"""


def test_components_named_inside_a_component_are_validated_with_their_yaml_line(
    fake_distribution, tmp_path, capsys
):
    fake_distribution("medfeat-nested", {"medfeat_nested.py": NESTED}, {"n": "medfeat_nested"})
    cases = {
        "inner: {name: innr}": ("line 5", "'pretrainer.inner.name'", "Did you mean 'inner'"),
        "inner: {name: inner, strides: 2}": ("line 5", "'pretrainer.inner.strides'", "unknown option"),
        "deeper: {helper: {name: inner, stride: x}}": ("line 5", "pretrainer.deeper.helper.stride", "integer"),
        "maybe: {name: iner}": ("line 5", "'pretrainer.maybe.name'", "Did you mean 'inner'"),
        "several: [{name: inner}, {name: inner, strid: 1}]": ("line 5", "pretrainer.several[1].strid", "unknown option"),
        "named: {a: {name: inner, strid: 1}}": ("line 5", "pretrainer.named.a.strid", "unknown option"),
    }  # fmt: skip
    for i, (section, expected) in enumerate(cases.items()):
        path = tmp_path / f"p{i}.yaml"
        path.write_text(
            f"kind: pretraining\ndata: {{name: breathing-phantom}}\npretrainer:\n  name: outer\n  {section}\n"
        )
        assert main(["validate", str(path)]) == 2
        err = " ".join(capsys.readouterr().err.split())
        for text in expected:
            assert text in err, (section, text, err)
    ok = tmp_path / "ok.yaml"
    ok.write_text("kind: pretraining\ndata: {name: breathing-phantom}\npretrainer: {name: outer}\n")
    assert main(["validate", str(ok)]) == 0


def test_under_torchrun_only_rank_0_writes_the_summary(fake_distribution, tmp_path, monkeypatch):
    fake_distribution("medfeat-blobs", {"medfeat_blobs.py": PLUGIN}, {"blobs": "medfeat_blobs"})
    p = tmp_path / "pre.yaml"
    p.write_text("kind: pretraining\ndata: {name: blobs, n: 2}\npretrainer: {name: stats}\n")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["run", str(p), "--out", str(tmp_path / "r1")]) == 0
    assert not (tmp_path / "r1" / "provenance.json").exists()
    assert not (tmp_path / "r1" / "metrics.json").exists()
    infer = tmp_path / "infer.yaml"
    head = tmp_path / "head.json"
    head.write_text(json.dumps({"t": 0.5}))
    infer.write_text(
        "kind: segmentation\nmode: infer\ndata: {name: blobs}\nhead: {name: threshold}\n"
        f"checkpoint: {head}\n"
    )
    assert main(["run", str(infer), "--out", str(tmp_path / "i1")]) == 0
    assert not (tmp_path / "i1").exists()  # inference is rank 0's whole job: nothing written here
    monkeypatch.setenv("RANK", "0")
    assert main(["run", str(p), "--out", str(tmp_path / "r0")]) == 0
    assert json.loads((tmp_path / "r0" / "provenance.json").read_text())["world_size"] == 2
    assert main(["run", str(infer), "--out", str(tmp_path / "i0")]) == 0
    assert (tmp_path / "i0" / "s3" / "labels.nii.gz").is_file()


def test_python_dash_m_medfeat_is_the_cli():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "medfeat", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "run" in proc.stdout
