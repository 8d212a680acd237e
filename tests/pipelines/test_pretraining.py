"""The pretraining pipeline runs a plugin's pretrainer on a plugin's dataset."""

import json

from medfeat.cli.main import main


def test_pretraining_pipeline(blobs_plugin, tmp_path):
    p = tmp_path / "pre.yaml"
    p.write_text("kind: pretraining\ndata: {name: blobs, n: 3}\npretrainer: {name: stats}\n")
    assert main(["-q", "run", str(p), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "stats.json").is_file()
    assert json.loads((tmp_path / "o" / "provenance.json").read_text())["config"]["data"] == {
        "name": "blobs",
        "n": 3,
    }
