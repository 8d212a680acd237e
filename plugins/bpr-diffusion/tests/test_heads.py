"""Probing heads: loss and Dice on hand-made cases, learning on frozen features, save/load, geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from medfeat_bpr_diffusion.config import ProbeConfig, ZSplitConfig
from medfeat_bpr_diffusion.datasets import LabelledVolumeZSplit
from medfeat_bpr_diffusion.heads import FPNProbe, ProbeHead, bce_dice_loss

from medfeat.components import FeatureLevel, FeatureMap
from medfeat.errors import CheckpointError


def test_bce_dice_loss_matches_the_formula_on_a_hand_made_case():
    logits = torch.tensor([2.0, -1.0, 0.5, -3.0, 1.0, 0.0, -2.0, 4.0]).reshape(1, 1, 2, 2, 2)
    target = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0]).reshape(1, 1, 2, 2, 2)
    p = torch.sigmoid(logits)
    bce = -(target * p.log() + (1 - target) * (1 - p).log()).mean()
    dice = 1 - (2 * (p * target).sum() + 1e-5) / (p.sum() + target.sum() + 1e-5)
    assert torch.allclose(bce_dice_loss(logits, target), bce + dice, atol=1e-6)
    assert torch.allclose(bce_dice_loss(logits, target, dice_weight=0.0), bce, atol=1e-6)
    perfect = torch.where(target > 0, 30.0, -30.0)
    assert float(bce_dice_loss(perfect, target)) < 1e-4


def test_fpn_probe_combines_scales_as_described():
    net = FPNProbe([3, 5], [(1, 1, 1), (2, 2, 2)], hidden=4, classes=2).eval()
    fine, coarse = torch.randn(1, 3, 4, 4, 4), torch.randn(1, 5, 2, 2, 2)
    x = F.interpolate(net.ups[0](net.skips[1](coarse)), scale_factor=2, mode="nearest")
    x = x + net.skips[0](fine)
    expected = net.out(x + net.block(x))
    assert torch.allclose(net([fine, coarse]), expected, atol=1e-6)


class IntensityPyramid:
    """A label-free stand-in backbone: HU bands at full and half resolution."""

    def extract(self, image):
        hu = image.tensor()
        data = torch.stack([(hu > 100).float(), ((hu < -100) & (hu > -500)).float(), hu / 1000])
        coarse = F.avg_pool3d(data[None], 2)[0]
        g = image.grid
        cg = g.with_shape_and_spacing(
            tuple(n // 2 for n in g.shape), tuple(s * 2 for s in g.spacing)
        )
        return FeatureMap(
            [FeatureLevel(data, g, "fine"), FeatureLevel(coarse, cg, "coarse")], image
        )


@pytest.mark.parametrize("kind", ["fpn", "linear"])
def test_probe_learns_organs_and_is_evaluated_on_a_held_out_slab(kind, ct_files, context, tmp_path):
    img, lab = ct_files
    data = LabelledVolumeZSplit(
        ZSplitConfig(image=img, labels=lab, train_slices=(0, 10), test_slices=(10, 20))
    )
    train, test = list(data.segmentation_samples("train")), list(data.segmentation_samples("test"))
    cfg = ProbeConfig(
        hidden_channels=8, lr=2e-2, steps=120, batch_size=2, crop_size_vox=(8, 16, 16)
    )
    head = ProbeHead(cfg, context, kind)
    metrics = head.fit(train, test, tmp_path, context, backbone=IntensityPyramid())
    assert metrics["label_ids"] == [1, 2]
    assert metrics["loss_last_20"] < metrics["loss_first_20"]
    assert metrics["validation"]["mean_dice"] > 0.85, metrics["validation"]
    pred = head.predict(test[0].image, IntensityPyramid())
    assert pred.grid.same_as(test[0].image.grid)  # label map on the image's own (flipped) grid
    # Dice reported equals Dice recomputed by hand from the prediction
    y, p = test[0].labels.numpy() == 1, pred.numpy() == 1
    assert metrics["validation"]["dice_per_label"]["1"] == pytest.approx(
        2 * (y & p).sum() / (y.sum() + p.sum()), abs=1e-4
    )

    reloaded = ProbeHead(ProbeConfig(), context, kind)
    reloaded.load(tmp_path / "head.pt")
    assert np.array_equal(reloaded.predict(test[0].image, IntensityPyramid()).numpy(), pred.numpy())
    other = ProbeHead(ProbeConfig(), context, "linear" if kind == "fpn" else "fpn")
    with pytest.raises(CheckpointError, match="probe"):
        other.load(tmp_path / "head.pt")


def test_overlapping_slabs_are_refused(ct_files):
    from medfeat.errors import ConfigError

    img, lab = ct_files
    with pytest.raises(ConfigError, match="overlap"):
        LabelledVolumeZSplit(
            ZSplitConfig(image=img, labels=lab, train_slices=(0, 12), test_slices=(10, 20))
        )
