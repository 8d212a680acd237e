"""The example YAMLs run end to end through `medfeat run` (weight-free, tiny), also under torchrun."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medfeat.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_example_train_then_infer_through_the_cli(tmp_path, capsys):
    train_out, infer_out = tmp_path / "train", tmp_path / "infer"
    small = ["head.training.max_steps=4", "data.n_train=6", "data.n_validation=2", "data.n_test=2",
             "data.size_px=32", "head.training.image_size_px=32"]  # fmt: skip
    code = main(["run", str(EXAMPLES / "leaf-synthetic-smoke.yaml"), "--out", str(train_out),
                 "--device", "cpu", *small])  # fmt: skip
    assert code == 0
    metrics = json.loads((train_out / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["distillation"] == "PatchDescriptor2D"
    assert (train_out / "leaf.pt").is_file() and (train_out / "checkpoints" / "last.pt").is_file()
    assert "random_weights" not in metrics  # trained from scratch: the trained model is the result
    # the validation figure is that of the written weights on the validation split
    from medfeat_leaf.config import SyntheticBlobsConfig
    from medfeat_leaf.datasets import SyntheticBlobs
    from medfeat_leaf.heads import load_trained
    from medfeat_leaf.train import evaluate

    blobs = SyntheticBlobs(SyntheticBlobsConfig(size_px=32, n_train=6, n_validation=2, n_test=2))
    validation = list(blobs.segmentation_samples("validation"))
    again = evaluate(load_trained(train_out / "leaf.pt"), validation, 32, "cpu")
    assert metrics["validation"]["n"] == 2
    assert metrics["validation"]["dice"] == pytest.approx(again["dice"])

    code = main(["run", str(EXAMPLES / "leaf-synthetic-infer.yaml"), "--out", str(infer_out),
                 "--device", "cpu", f"checkpoint={train_out / 'leaf.pt'}",
                 "data.n_train=6", "data.n_validation=2", "data.n_test=2", "data.size_px=32"])  # fmt: skip
    assert code == 0
    summary = json.loads((infer_out / "metrics.json").read_text())
    assert len(summary["cases"]) == 2
    from medfeat.io.images import read_image

    case = next(iter(summary["cases"]))
    labels = read_image(next((infer_out).rglob(f"*{case}*/labels.nii.gz")))
    assert labels.grid.shape == (32, 32)
    np.testing.assert_allclose(labels.grid.spacing, (0.5, 0.5))  # the input's grid
    assert set(np.unique(labels.numpy())) <= {0, 1}


def test_a_dinov3_backbone_from_another_plugin_is_the_distillation_teacher(tmp_path, capsys):
    """Mixing: any registered 2D backbone can teach LEAF, here medfeat-dinov3's `dinov3-2d`."""
    pytest.importorskip("medfeat_dinov3", reason="medfeat-dinov3 is not installed")
    import torch
    import yaml

    doc = yaml.safe_load((EXAMPLES / "leaf-synthetic-smoke.yaml").read_text())
    doc["backbone"] = {"name": "dinov3-2d", "model": "tiny", "random_weights": True,
                       "image_size_px": 32}  # fmt: skip
    doc["data"].update(n_train=4, n_validation=2, n_test=2, size_px=32)
    doc["head"]["training"].update(max_steps=2, image_size_px=32, teacher_image_size_px=32)
    path = tmp_path / "leaf-dinov3-teacher.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--device", "cpu"]) == 0
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["distillation"] == "ImageBackbone2D"
    state = torch.load(tmp_path / "o" / "leaf.pt", weights_only=True)
    assert state["teacher_dim"] == 64  # the tiny DINOv3's width reached the projector

    doc["backbone"] = {"name": "dinov3-slices", "model": "tiny", "random_weights": True}
    path.write_text(yaml.safe_dump(doc))
    assert main(["run", str(path), "--out", str(tmp_path / "s"), "--device", "cpu"]) == 2
    assert "dinov3-2d from medfeat-dinov3" in " ".join(capsys.readouterr().err.split())


def test_ldm_preset_without_weights_fails_cleanly_from_the_cli(tmp_path, capsys):
    yaml = tmp_path / "p.yaml"
    yaml.write_text(
        "kind: segmentation\nrequires: [medfeat-leaf]\ndata: {name: synthetic-blobs-2d}\n"
        "head: {name: leaf}\n"
    )
    assert main(["run", str(yaml), "--out", str(tmp_path / "o"), "--device", "cpu"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "unet_checkpoint and vae_checkpoint" in err and "from_scratch: true" in err


@pytest.mark.realdata
def test_cvc_example_runs_on_the_real_frames(shared_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the example's paths are relative to its own folder
    out = tmp_path / "cvc"
    overrides = [f"data.root={shared_data / 'polyp-cvc'}", "data.max_samples=4",
                 "head.training.max_steps=2", "head.training.batch_size=2"]  # fmt: skip
    assert (
        main(["run", str(EXAMPLES / "leaf-cvc-small-cpu.yaml"), "--out", str(out), *overrides]) == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["validation"]["n"] == 4
    code = main(["run", str(EXAMPLES / "leaf-cvc-small-cpu.yaml"), "--out", str(tmp_path / "t"),
                 "mode=infer", f"checkpoint={out / 'leaf.pt'}", *overrides])  # fmt: skip
    assert code == 0
    cases = json.loads((tmp_path / "t" / "metrics.json").read_text())["cases"]
    assert len(cases) == 4 and all("dice" in c for c in cases.values())


def test_distributed_training_under_torchrun_on_cpu(tmp_path):
    """Two processes (gloo on CPU) train one model with DistributedDataParallel; rank 0 writes."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "medfeat",
           "run", str(EXAMPLES / "leaf-synthetic-smoke.yaml"), "--out", str(out), "--device", "cpu",
           "head.training.max_steps=3", "data.n_train=8", "data.size_px=32",
           "head.training.image_size_px=32", "data.n_validation=2"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "provenance.json").read_text())["world_size"] == 2
    assert json.loads((out / "metrics.json").read_text())["steps"] == 3
    assert proc.stderr.count("Outputs, metrics.json") == 1  # only rank 0 reports
