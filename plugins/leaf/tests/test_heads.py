"""The `leaf` head: trained weights in, label maps on the input grid out; bad weight files refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from medfeat_leaf.backbone import PatchDescriptor2D
from medfeat_leaf.heads import LeafHead, load_trained

from medfeat.context import RunContext
from medfeat.errors import CheckpointError
from medfeat.geometry import Grid, Image


def test_head_predicts_on_the_input_grid_without_the_teacher(tiny, blobs, tmp_path):
    train = blobs("train", 4)
    head = LeafHead(tiny(max_steps=2), RunContext())
    head.fit(train, blobs("validation", 2), tmp_path, RunContext(), backbone=PatchDescriptor2D(8))
    infer = LeafHead(tiny(), RunContext())
    infer.load(tmp_path / "leaf.pt")
    assert infer.model.projector is None  # projector dropped at inference
    grid = Grid((48, 40), (0.7, 0.9), (10.0, -5.0), np.array([[0.0, 1.0], [1.0, 0.0]]))
    image = Image(np.random.default_rng(0).integers(0, 255, (3, 48, 40), dtype=np.uint8), grid)
    pred = infer.predict(image)
    assert pred.grid is grid and pred.numpy().shape == (48, 40)
    assert set(np.unique(pred.numpy())) <= {0, 1}
    assert np.array_equal(head.predict(image).numpy(), pred.numpy())  # leaf.pt is what was trained


def test_weights_that_are_not_a_leaf_training_result_are_refused(tiny, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist") as err:
        load_trained(tmp_path / "leaf.pt")
    assert "train mode" in err.value.remedy
    torch.save({"weights": {}}, tmp_path / "other.pt")  # readable, but no config
    with pytest.raises(CheckpointError, match="not a LEAF training result"):
        load_trained(tmp_path / "other.pt")
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="could not be read|truncated"):
        load_trained(tmp_path / "cut.pt")
    image = Image(np.zeros((3, 8, 8), np.uint8), Grid.from_shape((8, 8)))
    with pytest.raises(CheckpointError, match="no weights"):
        LeafHead(tiny(), RunContext()).predict(image)  # neither trained nor loaded
