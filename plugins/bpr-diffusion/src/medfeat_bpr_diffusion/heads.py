"""Probing heads on frozen multi-level features: the vox2vec FPN non-linear head and a linear probe.

Sigmoid per class, BCE + Dice loss, trained on random crops of the (precomputed, frozen) feature
maps; sliding-window inference on the finest feature grid, probabilities resampled to the image grid.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medfeat.api import (
    ConfigError,
    DataError,
    FeatureMap,
    Grid,
    Image,
    SegmentationSample,
    load_state_dict_strict,
    read_checkpoint,
    save_checkpoint,
)
from medfeat_bpr_diffusion.checkpoints import HEAD_FORMAT
from medfeat_bpr_diffusion.config import ProbeConfig
from medfeat_bpr_diffusion.tiling import sliding_average

HEAD_SOURCE = "Probe weights are written by `fit` (segmentation pipeline, mode: train) as head.pt."


def _up(x: torch.Tensor, stride: Sequence[int]) -> torch.Tensor:
    return (
        x
        if all(s == 1 for s in stride)
        else F.interpolate(x, scale_factor=tuple(stride), mode="nearest")
    )


class FPNProbe(nn.Module):
    """Per scale a 1x1 conv + nearest upsampling plus a 1x1 skip, a residual (BN-ReLU-1x1) x 2 block,
    then a 1x1 conv to the classes. Inputs are finest first."""

    def __init__(
        self,
        in_channels: Sequence[int],
        strides: Sequence[Sequence[int]],
        hidden: int,
        classes: int,
    ) -> None:
        super().__init__()
        self.strides = [tuple(s) for s in strides]
        self.skips = nn.ModuleList(nn.Conv3d(c, hidden, 1) for c in in_channels)
        self.ups = nn.ModuleList(nn.Conv3d(hidden, hidden, 1) for _ in in_channels[1:])
        self.block = nn.Sequential(
            nn.BatchNorm3d(hidden), nn.ReLU(), nn.Conv3d(hidden, hidden, 1),
            nn.BatchNorm3d(hidden), nn.ReLU(), nn.Conv3d(hidden, hidden, 1),
        )  # fmt: skip
        self.out = nn.Conv3d(hidden, classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        x = self.skips[-1](feats[-1])
        for i in reversed(range(len(feats) - 1)):
            rel = [a // b for a, b in zip(self.strides[i + 1], self.strides[i], strict=True)]
            x = _up(self.ups[i](x), rel) + self.skips[i](feats[i])
        x = x + self.block(x)
        return self.out(x)


class LinearProbe(nn.Module):
    """Sum over levels of a 1x1 conv to the classes, upsampled (nearest): linear in the features."""

    def __init__(
        self,
        in_channels: Sequence[int],
        strides: Sequence[Sequence[int]],
        hidden: int,
        classes: int,
    ) -> None:
        super().__init__()
        self.strides = [tuple(s) for s in strides]
        self.convs = nn.ModuleList(nn.Conv3d(c, classes, 1) for c in in_channels)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return sum(
            _up(conv(f), s) for conv, f, s in zip(self.convs, feats, self.strides, strict=True)
        )


HEADS = {"fpn": FPNProbe, "linear": LinearProbe}


def bce_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0
) -> torch.Tensor:
    """Mean BCE (with logits) + ``dice_weight`` x soft Dice loss (MONAI, per sample and class)."""
    from monai.losses import DiceLoss

    dice = DiceLoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5)(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target) + dice_weight * dice


def aligned_levels(fmap: FeatureMap) -> tuple[list[torch.Tensor], Grid, list[tuple[int, ...]]]:
    """Levels resampled (if needed) onto grids that tile the finest one by integer strides.

    Returns tensors (finest first), the finest grid (cropped to a multiple of the coarsest stride)
    and each level's stride in voxels of the finest grid (numpy order).
    """
    from medfeat.api import resample_level

    levels = sorted(fmap.levels, key=lambda lv: -lv.grid.num_voxels)
    ref = levels[0].grid
    strides = [
        tuple(
            max(1, int(round(a / b)))
            for a, b in zip(lv.grid.spacing_array_order, ref.spacing_array_order, strict=True)
        )
        for lv in levels
    ]
    big = [max(s[a] for s in strides) for a in range(3)]
    shape = tuple((n // b) * b for n, b in zip(ref.shape, big, strict=True))
    if min(shape) == 0:
        raise DataError(
            f"Feature map of {fmap.source.name if fmap.source else 'an image'} is too small."
        )
    ref = Grid(shape, ref.spacing, ref.origin, ref.direction)
    out = []
    for lv, s in zip(levels, strides, strict=True):
        target = ref.with_shape_and_spacing(
            tuple(n // k for n, k in zip(shape, s, strict=True)),
            tuple(sp * k for sp, k in zip(ref.spacing, reversed(s), strict=True)),
        )
        if lv.grid.same_as(target):
            data = lv.data
        elif Grid(target.shape, lv.grid.spacing, lv.grid.origin, lv.grid.direction).same_as(
            target
        ) and all(a >= b for a, b in zip(lv.grid.shape, target.shape, strict=True)):
            data = lv.data[(slice(None), *[slice(0, n) for n in target.shape])]
        else:
            data = resample_level(lv, target).data
        out.append(data.float())
    return out, ref, strides


class ProbeHead:
    """A :class:`~medfeat.components.SegmentationHead` on frozen backbone features."""

    def __init__(self, config: ProbeConfig, context: Any, kind: str) -> None:
        self.config, self.context, self.kind = config, context, kind
        self.net: nn.Module | None = None
        self.label_ids: list[int] = list(config.label_ids or [])

    # ------------------------------------------------------------------ helpers
    def _build(self, in_channels: Sequence[int], strides: Sequence[Sequence[int]]) -> nn.Module:
        torch.manual_seed(self.context.seed)
        net = HEADS[self.kind](
            list(in_channels), strides, self.config.hidden_channels, len(self.label_ids)
        )
        self.meta = {"in_channels": list(in_channels), "strides": [list(s) for s in strides]}
        return net

    def _features(self, image: Image, backbone: Any) -> tuple[list[torch.Tensor], Grid, list]:
        if backbone is None:
            raise ConfigError(
                f"The {self.kind} probe trains on frozen backbone features, but no backbone is set.",
                key_path="backbone",
                remedy="Add a `backbone:` section (e.g. bpr-diffusion or mind-ssc).",
            )
        return aligned_levels(backbone.extract(image))

    def _targets(self, labels: Image, grid: Grid) -> torch.Tensor:
        from medfeat.api import resample_to_grid

        lab = resample_to_grid(labels, grid, "label").numpy()
        return torch.from_numpy(np.stack([lab == k for k in self.label_ids]).astype(np.float32))

    def _crop(self, shape: Sequence[int], strides: Sequence[Sequence[int]]) -> tuple[int, ...]:
        big = [max(s[a] for s in strides) for a in range(3)]
        return tuple(
            max(b, (min(c, n) // b) * b)
            for c, n, b in zip(self.config.crop_size_vox, shape, big, strict=True)
        )

    # ------------------------------------------------------------------ protocol
    def fit(
        self,
        train: Sequence[SegmentationSample],
        validation: Sequence[SegmentationSample],
        out_dir: Path,
        context: Any,
        backbone: Any = None,
    ) -> dict:
        c = self.config
        if not train:
            raise DataError("No training samples.", remedy="Check the dataset's train split.")
        if not self.label_ids:
            found = set()
            for s in train:
                found |= set(np.unique(s.labels.numpy()).tolist())
            self.label_ids = sorted(int(v) for v in found if v != 0)
        data = []
        with context.timed("features"):
            for s in train:
                if s.labels is None:
                    raise DataError(f"Training sample {s.id} has no label map.")
                feats, grid, strides = self._features(s.image, backbone)
                data.append((feats, self._targets(s.labels, grid)))
        self.net = self._build([f.shape[0] for f in data[0][0]], strides).to(context.device)
        opt = torch.optim.Adam(self.net.parameters(), lr=c.lr)
        gen = np.random.default_rng(context.seed)
        start, losses, step = time.perf_counter(), [], 0
        self.net.train()
        for step in range(1, c.steps + 1):
            if c.max_wall_time_min and time.perf_counter() - start > 60 * c.max_wall_time_min:
                step -= 1
                break
            xs, ys = self._batch(data, strides, gen)
            logits = self.net([x.to(context.device) for x in xs])
            loss = bce_dice_loss(logits, ys.to(context.device), c.dice_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        ckpt = Path(out_dir) / "head.pt"
        save_checkpoint(
            {"format": HEAD_FORMAT, "version": 1, "kind": self.kind, "label_ids": self.label_ids,
             "config": c.model_dump(mode="json"), "state": self.net.state_dict(), **self.meta},
            ckpt,
        )  # fmt: skip
        metrics: dict[str, Any] = {
            "head": self.kind,
            "steps": step,
            "train_seconds": round(time.perf_counter() - start, 2),
            "loss_first_20": round(float(np.mean(losses[:20])), 4) if losses else None,
            "loss_last_20": round(float(np.mean(losses[-20:])), 4) if losses else None,
            "label_ids": self.label_ids,
            "checkpoint": str(ckpt),
        }
        if validation:
            metrics["validation"] = self.evaluate(validation, backbone)
        return metrics

    def _batch(
        self, data: list, strides: list, gen: np.random.Generator
    ) -> tuple[list, torch.Tensor]:
        xs_per_level: list[list[torch.Tensor]] = [[] for _ in strides]
        ys = []
        for _ in range(self.config.batch_size):
            feats, target = data[int(gen.integers(len(data)))]
            shape = target.shape[1:]
            crop = self._crop(shape, strides)
            big = [max(s[a] for s in strides) for a in range(3)]
            start = [
                int(gen.integers(0, (n - c) // b + 1)) * b
                for n, c, b in zip(shape, crop, big, strict=True)
            ]
            ys.append(
                target[(slice(None), *[slice(a, a + c) for a, c in zip(start, crop, strict=True)])]
            )
            for i, (f, s) in enumerate(zip(feats, strides, strict=True)):
                sl = [slice(a // k, (a + c) // k) for a, c, k in zip(start, crop, s, strict=True)]
                xs_per_level[i].append(f[(slice(None), *sl)])
        return [torch.stack(x) for x in xs_per_level], torch.stack(ys)

    def evaluate(self, samples: Sequence[SegmentationSample], backbone: Any) -> dict:
        """Dice per label (and mean) of the predictions against the samples' label maps."""
        from medfeat.api import dice_per_label

        per_case = {}
        for s in samples:
            pred = self.predict(s.image, backbone)
            dice = dice_per_label(s.labels, pred, self.label_ids)
            per_case[s.id] = {str(k): round(float(v), 4) for k, v in dice.items()}
        per_label = {
            k: float(np.nanmean([d[k] for d in per_case.values()]))
            for k in map(str, self.label_ids)
        }
        return {
            "dice": per_case,
            "dice_per_label": {k: round(v, 4) for k, v in per_label.items()},
            "mean_dice": round(float(np.nanmean(list(per_label.values()))), 4),
        }

    def load(self, checkpoint: Path) -> None:
        state = read_checkpoint(
            checkpoint, what=f"{self.kind} probe", remedy=HEAD_SOURCE, format=HEAD_FORMAT
        )
        if state.get("kind") != self.kind:
            from medfeat.api import CheckpointError

            raise CheckpointError(
                f"{checkpoint} holds a {state.get('kind')!r} probe, not a {self.kind!r} one.",
                remedy="Use the head component it was trained with (fpn-probe or linear-probe).",
            )
        self.label_ids = [int(k) for k in state["label_ids"]]
        hidden = int(state["config"].get("hidden_channels", self.config.hidden_channels))
        self.config = self.config.model_copy(update={"hidden_channels": hidden})
        self.net = self._build(state["in_channels"], state["strides"])
        load_state_dict_strict(self.net, state["state"], what=f"{self.kind} probe", path=checkpoint)

    @torch.no_grad()
    def predict(self, image: Image, backbone: Any = None) -> Image:
        from medfeat.api import FeatureLevel, resample_level

        if self.net is None:
            raise ConfigError(
                "The probe has no weights yet.", remedy="Train it, or give `checkpoint:`."
            )
        feats, grid, strides = self._features(image, backbone)
        if [f.shape[0] for f in feats] != self.meta["in_channels"]:
            raise DataError(
                f"The backbone gives {[f.shape[0] for f in feats]} channels per level; the probe was "
                f"trained on {self.meta['in_channels']}.",
                remedy="Use the backbone (and options) the probe was trained with.",
            )
        net = self.net.to(self.context.device).eval()
        big = [max(s[a] for s in strides) for a in range(3)]
        window = self._crop(grid.shape, strides)

        def run(sl: tuple[slice, ...]) -> list[torch.Tensor]:
            parts = []
            for f, s in zip(feats, strides, strict=True):
                parts.append(
                    f[
                        (
                            slice(None),
                            *[slice(x.start // k, x.stop // k) for x, k in zip(sl, s, strict=True)],
                        )
                    ][None]
                )
            return [torch.sigmoid(net([p.to(self.context.device) for p in parts]))[0]]

        probs = sliding_average(
            grid.shape,
            window,
            self.config.overlap,
            [1],
            [len(self.label_ids)],
            run,
            align=max(big),
            stitching=self.config.stitching,
        )[0]
        probs = resample_level(FeatureLevel(probs, grid), image.grid).data
        best, idx = probs.max(0)
        ids = torch.tensor(self.label_ids, dtype=torch.int16)
        labels = torch.where(
            best > self.config.threshold, ids[idx], torch.zeros((), dtype=torch.int16)
        )
        return Image(labels.numpy(), image.grid, {"name": f"{image.name} ({self.kind} probe)"})


def make_fpn(config: ProbeConfig, context: Any) -> ProbeHead:
    return ProbeHead(config, context, "fpn")


def make_linear(config: ProbeConfig, context: Any) -> ProbeHead:
    return ProbeHead(config, context, "linear")
