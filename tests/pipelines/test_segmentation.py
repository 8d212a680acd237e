"""The segmentation pipeline (train, then infer) drives a plugin's dataset and head end to end."""

import json

from medfeat.cli.main import main


def test_segmentation_train_then_infer(blobs_plugin, tmp_path):
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


def test_infer_scores_only_the_labels_the_head_segments(fake_distribution, blobs_source, tmp_path):
    """Ground truth with more labels than the head knows: Dice of the head's labels only."""
    plugin = blobs_source.replace(
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
