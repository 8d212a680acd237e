"""Strict loaders for the official MAISI v1 checkpoint files (local paths only, nothing downloaded).

* autoencoder: a plain state dict (``autoencoder_epoch273.pt``, later ``autoencoder_v1.pt``);
* diffusion U-Net: ``{epoch, loss, num_train_timesteps, scale_factor, unet_state_dict}``
  (``diff_unet_3d_ddpm.pt``).

Every problem (missing, truncated, wrong kind, the later "rflow" U-Net, a shape mismatch) is a
:class:`~medfeat.errors.CheckpointError` naming what was expected and what was found.
"""

from __future__ import annotations

from pathlib import Path

import torch

from medfeat.api import (
    CheckpointError,
    describe_checkpoint,
    load_state_dict_strict,
    read_checkpoint,
)

WEIGHTS_SOURCE = (
    "The MAISI v1 (DDPM) weights are distributed by NVIDIA with MONAI's `maisi_ct_generative` "
    "bundle and the NV-Generate-CT repository (files autoencoder_epoch273.pt / autoencoder_v1.pt "
    "and diff_unet_3d_ddpm.pt); download them yourself and give their local paths."
)
UNET_FILE_KEYS = ("unet_state_dict", "scale_factor")


def _looks_like_autoencoder(sd: dict) -> bool:
    return any(str(k).startswith(("encoder.", "decoder.", "quant_conv_mu")) for k in sd)


def _looks_like_rflow(sd: dict) -> bool:
    keys = set(map(str, sd))
    return "class_embedding.weight" in keys or (
        "spacing_layer.0.weight" in keys and "top_region_index_layer.0.weight" not in keys
    )


def _load_strict(module: torch.nn.Module, state_dict: dict, what: str, path: str | Path) -> None:
    load_state_dict_strict(
        module,
        state_dict,
        what=f"MAISI v1 {what}",
        path=path,
        remedy="Give the MAISI v1 DDPM files, not the later rflow ones or another model. "
        + WEIGHTS_SOURCE,
    )


def load_autoencoder_weights(module: torch.nn.Module, path: str | Path) -> None:
    """Load the official autoencoder file (a plain state dict) strictly into ``module``."""
    obj = read_checkpoint(path, what="MAISI v1 autoencoder", remedy=WEIGHTS_SOURCE, plain=True)
    if isinstance(obj, dict) and all(k in obj for k in UNET_FILE_KEYS):
        raise CheckpointError(
            f"The autoencoder checkpoint {str(path)!r} is a diffusion U-Net file "
            "(it holds unet_state_dict and scale_factor).",
            remedy="Give this file as the U-Net checkpoint and the autoencoder file "
            "(autoencoder_epoch273.pt / autoencoder_v1.pt) as the autoencoder.",
        )
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"The autoencoder checkpoint {str(path)!r} should be a plain state dict of tensors; "
            f"found {describe_checkpoint(obj)}.",
            remedy=WEIGHTS_SOURCE,
        )
    _load_strict(module, obj, "autoencoder", path)


def load_unet_weights(module: torch.nn.Module, path: str | Path) -> float:
    """Load the official U-Net file strictly into ``module``; return its ``scale_factor``."""
    obj = read_checkpoint(path, what="MAISI v1 diffusion U-Net", remedy=WEIGHTS_SOURCE, plain=True)
    if isinstance(obj, dict) and _looks_like_autoencoder(obj):
        raise CheckpointError(
            f"The diffusion U-Net checkpoint {str(path)!r} is an autoencoder state dict "
            "(its keys start with encoder./decoder.).",
            remedy="Give diff_unet_3d_ddpm.pt as the U-Net and this file as the autoencoder.",
        )
    if not isinstance(obj, dict) or any(k not in obj for k in UNET_FILE_KEYS):
        raise CheckpointError(
            f"The diffusion U-Net checkpoint {str(path)!r} should be a dict with keys "
            f"{list(UNET_FILE_KEYS)} (plus epoch, loss, num_train_timesteps); found {describe_checkpoint(obj)}.",
            remedy=WEIGHTS_SOURCE,
        )
    sd = obj["unet_state_dict"]
    if isinstance(sd, dict) and _looks_like_rflow(sd):
        raise CheckpointError(
            f"The diffusion U-Net checkpoint {str(path)!r} holds the later MAISI rflow U-Net "
            "(class embeddings / spacing-only conditioning), not the v1 DDPM U-Net MedDIFT uses.",
            remedy="Give diff_unet_3d_ddpm.pt (MAISI v1, DDPM). " + WEIGHTS_SOURCE,
        )
    _load_strict(module, sd, "diffusion U-Net", path)
    scale = obj["scale_factor"]
    scale = float(scale.item() if isinstance(scale, torch.Tensor) else scale)
    if not (scale > 0 and scale == scale):
        raise CheckpointError(
            f"The diffusion U-Net checkpoint {str(path)!r} has an invalid scale_factor {scale}.",
            remedy=WEIGHTS_SOURCE,
        )
    return scale
