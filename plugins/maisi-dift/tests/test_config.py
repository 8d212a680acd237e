"""YAML options of the plugin: required weights, and paths relative to the pipeline file's folder
that `medfeat validate` checks before a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from medfeat.cli.main import main

PHANTOM = "data: {name: breathing-phantom, shape: [24, 32, 32]}\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_missing_weights_is_a_config_error(tmp_path, capsys):
    path = write(
        tmp_path / "p.yaml",
        "kind: correspondence\n" + PHANTOM + "backbone: {name: maisi-dift}\n"
        "matcher: {name: meddift-matcher}\n",
    )
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr()
    assert "autoencoder_checkpoint" in err.out + err.err


def test_checkpoints_resolve_against_the_pipeline_folder_and_are_checked(
    tmp_path, monkeypatch, capsys
):
    pipeline = write(
        tmp_path / "pipelines" / "p.yaml",
        "kind: correspondence\n" + PHANTOM + "backbone: {name: maisi-dift, "
        "autoencoder_checkpoint: weights/ae.pt, unet_checkpoint: weights/unet.pt}\n"
        "matcher: {name: meddift-matcher}\n",
    )
    monkeypatch.chdir(tmp_path)  # not the pipeline's folder
    assert main(["validate", str(pipeline)]) == 2
    out = capsys.readouterr()
    assert str(tmp_path / "pipelines" / "weights" / "ae.pt") in " ".join(
        (out.out + out.err).split()
    )
    for name in ("ae.pt", "unet.pt"):
        write(tmp_path / "pipelines" / "weights" / name, "placeholder")
    assert main(["validate", str(pipeline)]) == 0
    out = capsys.readouterr().out
    assert "inputs exist: backbone.autoencoder_checkpoint, backbone.unet_checkpoint" in out


@pytest.mark.parametrize("root, code", [("L2R", 0), ("nope", 2)])
def test_dataset_root_resolves_against_the_pipeline_folder(
    tmp_path, monkeypatch, make_layout, root, code
):
    make_layout(tmp_path / "L2R", cases=("0001",))
    pipeline = write(
        tmp_path / "p.yaml",
        f"kind: correspondence\ndata: {{name: learn2reg-lungct, root: {root}}}\n"
        "backbone: {name: mind-ssc}\nmatcher: {name: meddift-matcher}\n",
    )
    monkeypatch.chdir(tmp_path.parent)
    assert main(["validate", str(pipeline)]) == code
