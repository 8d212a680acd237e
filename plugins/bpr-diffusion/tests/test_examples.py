"""The example pipelines run end to end through the CLI (on a generated CT, and on the shared CT)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from medfeat.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _example(name: str, tmp_path: Path, **changes) -> Path:
    doc = yaml.safe_load((EXAMPLES / name).read_text())
    for dotted, value in changes.items():
        node = doc
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def _run(path: Path, out: Path) -> dict:
    assert main(["run", str(path), "--out", str(out), "--device", "cpu"]) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_examples_pretrain_train_and_infer_on_a_generated_ct(ct_files, tmp_path, tiny_unet):
    img, lab = ct_files
    small = {
        "preprocess": {"spacing_mm": [5.0, 5.0, 5.0]},
        "unet": tiny_unet,
        "patch_size_vox": [8, 16, 16],
    }
    pre = _run(
        _example("pretrain-tiny.yaml", tmp_path, data__paths=[str(img)], pretrainer__max_steps=3,
                 **{f"pretrainer__{k}": v for k, v in small.items()}),
        tmp_path / "pre",
    )  # fmt: skip
    assert pre["steps"] == 3 and Path(pre["checkpoint"]).is_file()
    split = {"data__image": str(img), "data__labels": str(lab), "data__train_slices": [0, 8],
             "data__validation_slices": [8, 10], "data__test_slices": [10, 20]}  # fmt: skip
    backbone = {
        "name": "bpr-diffusion",
        "checkpoint": pre["checkpoint"],
        "feature_levels": [0, 1],
        "timesteps": [10],
    }
    head = {"head__label_ids": [1, 2], "head__steps": 5, "head__crop_size_vox": [8, 16, 16]}
    fit = _run(
        _example("probe-train-tiny.yaml", tmp_path, backbone=backbone, **split, **head),
        tmp_path / "fit",
    )
    assert fit["steps"] == 5 and set(fit["validation"]["dice_per_label"]) == {"1", "2"}
    inf = _run(
        _example(
            "probe-infer-tiny.yaml",
            tmp_path,
            backbone=backbone,
            checkpoint=fit["checkpoint"],
            **split,
        ),
        tmp_path / "inf",
    )
    (case,) = inf["cases"]
    assert set(inf["cases"][case]["dice"]) >= {"1", "2"}
    assert (tmp_path / "inf" / case / "labels.nii.gz").is_file()


@pytest.mark.slow
def test_coordinate_provider_is_swappable_from_yaml(make_ct, write_bpr, tmp_path, tiny_unet):
    from medfeat.io.images import write_image

    write_image(make_ct(shape=(6, 40, 48))[0], tmp_path / "ct.nii.gz")
    weights = write_bpr(tmp_path / "public_bpr_model")
    common = {"data__paths": [str(tmp_path / "ct.nii.gz")], "pretrainer__max_steps": 1,
              "pretrainer__unet": tiny_unet, "pretrainer__patch_size_vox": [8, 16, 16]}  # fmt: skip
    bpr = {"name": "bpr-slice-score", "checkpoint": str(weights)}
    out = _run(
        _example("pretrain-tiny.yaml", tmp_path, pretrainer__coordinates=bpr, **common),
        tmp_path / "b",
    )
    assert out["coordinate_channels"] == 1  # one slice score
    box = {"name": "bbox-normalised"}
    out = _run(
        _example("pretrain-tiny.yaml", tmp_path, pretrainer__coordinates=box, **common),
        tmp_path / "c",
    )
    assert out["coordinate_channels"] == 3  # x, y, z
    import torch
    from medfeat_bpr_diffusion.networks import APENetwork

    torch.save({"state_dict": {f"nn.{k}" if k != "scale" else k: v
                               for k, v in APENetwork().state_dict().items()}},
               tmp_path / "ape.ckpt")  # fmt: skip
    ape = {"name": "ape", "checkpoint": str(tmp_path / "ape.ckpt")}
    out = _run(
        _example("pretrain-tiny.yaml", tmp_path, pretrainer__coordinates=ape, **common),
        tmp_path / "a",
    )
    assert out["coordinate_channels"] == 3  # APE's three body-part coordinates


@pytest.mark.realdata
@pytest.mark.slow
def test_pretrain_example_runs_on_the_shared_real_ct(shared_data, tmp_path, monkeypatch):
    """The example as written: its relative data path resolves against its own folder."""
    monkeypatch.chdir(tmp_path)  # any working directory
    out = tmp_path / "out"
    args = ["run", str(EXAMPLES / "pretrain-tiny.yaml"), "--out", str(out), "--device", "cpu",
            "pretrainer.max_steps=2", "pretrainer.checkpoint_every_steps=100"]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["coordinate_channels"] == 3
    assert Path(metrics["checkpoint"]).is_file()
    assert "random_weights" not in metrics  # trained from scratch: not a random-weight output


def test_a_probe_on_random_init_features_is_marked_as_not_a_result(ct_files, tmp_path, tiny_unet):
    img, lab = ct_files
    path = _example(
        "probe-train-tiny.yaml", tmp_path, data__image=str(img), data__labels=str(lab),
        data__train_slices=[0, 8], data__validation_slices=[8, 10], data__test_slices=[10, 20],
        backbone__unet=tiny_unet, backbone__patch_size_vox=[8, 16, 16],
        backbone__feature_levels=[0, 1], backbone__timesteps=[10],
        backbone__preprocess={"spacing_mm": [5.0, 5.0, 5.0]},
        head__label_ids=[1, 2], head__steps=2, head__crop_size_vox=[8, 16, 16],
    )  # fmt: skip
    metrics = _run(path, tmp_path / "o")
    expected = ["bpr-diffusion backbone DiffusionUNet3d (seed 0)"]
    assert metrics["random_weights"] == expected and metrics["is_result"] is False
    provenance = json.loads((tmp_path / "o" / "provenance.json").read_text())
    assert provenance["random_weights"] == expected


def test_missing_volumes_are_a_clean_cli_error(tmp_path, capsys):
    path = _example("pretrain-tiny.yaml", tmp_path, data__paths=[str(tmp_path / "none*.nii.gz")])
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "ct-volumes found no files" in capsys.readouterr().err
