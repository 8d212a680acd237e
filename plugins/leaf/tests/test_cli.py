"""`medfeat leaf-stability`: the Dice spread over inference seeds, and clean errors."""

from __future__ import annotations

import numpy as np
import pytest
from medfeat_leaf.cli import stability
from medfeat_leaf.heads import LeafHead, load_trained
from medfeat_leaf.train import evaluate

from medfeat.cli.main import main
from medfeat.context import RunContext


def test_stability_reports_the_spread_over_seeds(tiny, blobs, tmp_path):
    LeafHead(tiny(max_steps=2), RunContext()).fit(blobs("train", 4), [], tmp_path, RunContext())
    model = load_trained(tmp_path / "leaf.pt")
    result = stability(model, blobs("test", 3), 32, "cpu", seeds=3)
    assert result["seeds"] == 3 and len(result["dice_per_seed"]) == 3
    assert result["dice_std"] == pytest.approx(np.std(result["dice_per_seed"]))
    for seed in (0, 2):  # each entry is the mean Dice of the inference run with that seed
        run = evaluate(model, blobs("test", 3), 32, "cpu", seed=seed)
        assert result["dice_per_seed"][seed] == pytest.approx(run["dice"])


def test_a_missing_data_folder_is_a_clean_error(tiny, blobs, tmp_path, capsys):
    LeafHead(tiny(max_steps=1), RunContext()).fit(blobs("train", 2), [], tmp_path, RunContext())
    assert main(["leaf-stability", str(tmp_path / "leaf.pt"), str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
