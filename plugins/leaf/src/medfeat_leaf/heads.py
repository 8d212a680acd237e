"""The `leaf` segmentation head: medfeat's SegmentationHead protocol over LEAF."""

from __future__ import annotations

from pathlib import Path

import torch

from medfeat.api import CheckpointError, Image, read_checkpoint
from medfeat_leaf.config import LeafConfig

#: options added when the reference's latent scale and x0 clamp became the default; a leaf.pt
#: whose config lacks them was trained (and is evaluated) without either.
_BEFORE_REFERENCE_FIX = ("scale_image_latent", "clip_x0")


def load_trained(path: Path, override: LeafConfig | None = None):
    """A :class:`LeafModel` with the weights written by training (``leaf.pt``); no projector."""
    from medfeat_leaf.build import build_leaf

    remedy = "Give the leaf.pt written by `medfeat run` in train mode (it writes <out>/leaf.pt)."
    state = read_checkpoint(path, what="LEAF training result", remedy=remedy, plain=True)
    try:
        stored = dict(state["config"])
        for key in _BEFORE_REFERENCE_FIX:  # trained before these options existed: as trained
            stored.setdefault(key, False)
        config = LeafConfig.model_validate(stored)
        weights = state["weights"]
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is not a LEAF training result ({type(exc).__name__}: {str(exc)[:200]}).",
            remedy=remedy,
        ) from exc
    if override is not None:
        config = config.model_copy(
            update={k: getattr(override, k) for k in ("threshold", "inference_seed")}
        )
    # pretrained parts are inside the file: build without reading the original checkpoints
    config = config.model_copy(
        update={"unet_checkpoint": None, "vae_checkpoint": None, "from_scratch": True}
    )
    model = build_leaf(config)
    weights = {k: v for k, v in weights.items() if not k.startswith("projector.")}
    mods = model.trainable_modules()
    from medfeat_leaf.checkpoints import load_strict

    load_strict(mods, weights, "LEAF weights", "your own training run (leaf.pt)")
    if "mask_codec" in state:
        load_strict(model.mask_codec, state["mask_codec"], "LEAF mask codec", "your training run")
    return model.eval()


class LeafHead:
    """Trains LEAF on images (the pipeline's `backbone`, when given, is the distillation teacher)."""

    def __init__(self, config: LeafConfig, context) -> None:
        self.config = config
        self.context = context
        self.model = None

    def fit(self, train, validation, out_dir: Path, context, backbone=None) -> dict:
        from medfeat_leaf.build import build_leaf
        from medfeat_leaf.train import Trainer

        dist = self.config.distillation
        teacher = backbone if dist.enabled and dist.weight > 0 else None
        torch.manual_seed(context.seed)  # seeded initialisation of the random parts
        self.model = build_leaf(self.config)
        trainer = Trainer(self.model, Path(out_dir), context, teacher)
        metrics = trainer.fit(list(train), list(validation))
        metrics["distillation"] = None if teacher is None else type(teacher).__name__
        return metrics

    def load(self, checkpoint: Path) -> None:
        self.model = load_trained(checkpoint, self.config).to(self.context.device)

    def predict(self, image: Image, backbone=None) -> Image:
        """Binary label map on ``image``'s grid (the teacher is not used at inference)."""
        from medfeat_leaf.tensors import image_tensor, to_input_grid

        if self.model is None:
            raise CheckpointError("the LEAF head has no weights.", remedy="Give `checkpoint:`.")
        size = self.model.config.training.image_size_px
        x = image_tensor(image, size)[None].to(self.context.device) * 2 - 1
        g = torch.Generator().manual_seed(self.model.config.inference_seed)
        return to_input_grid(self.model.predict_mask(x, g)[0].cpu(), image)
