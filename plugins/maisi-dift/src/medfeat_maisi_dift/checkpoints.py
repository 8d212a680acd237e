"""Strict loaders for the official MAISI v1 checkpoint files (local paths only, nothing downloaded).

* autoencoder: a plain state dict (``autoencoder_epoch273.pt``, later ``autoencoder_v1.pt``);
* diffusion U-Net: ``{epoch, loss, num_train_timesteps, scale_factor, unet_state_dict}``
  (``diff_unet_3d_ddpm.pt``).

Every problem (missing, truncated, wrong kind, the later "rflow" U-Net, a shape mismatch) is a
:class:`~medfeat.errors.CheckpointError` naming what was expected and what was found.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medfeat.api import CheckpointError

WEIGHTS_SOURCE = (
    "The MAISI v1 (DDPM) weights are distributed by NVIDIA with MONAI's `maisi_ct_generative` "
    "bundle and the NV-Generate-CT repository (files autoencoder_epoch273.pt / autoencoder_v1.pt "
    "and diff_unet_3d_ddpm.pt); download them yourself and give their local paths."
)
UNET_FILE_KEYS = ("unet_state_dict", "scale_factor")


def read_checkpoint(path: str | Path, what: str) -> Any:
    """``torch.load`` a local file (tensors and plain containers only) or raise a clear error."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(
            f"The {what} checkpoint {str(p)!r} does not exist.", remedy=WEIGHTS_SOURCE
        )
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for truncated or foreign files
        raise CheckpointError(
            f"The {what} checkpoint {str(p)!r} ({p.stat().st_size} bytes) could not be read as a "
            f"PyTorch file ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); it may be "
            "truncated or not a checkpoint.",
            remedy="Download it again and check its size. " + WEIGHTS_SOURCE,
        ) from None


def _describe(obj: Any) -> str:
    if isinstance(obj, dict):
        keys = list(obj)
        head = ", ".join(map(str, keys[:4])) + (", ..." if len(keys) > 4 else "")
        return f"a dict with {len(keys)} keys ({head})"
    return f"a {type(obj).__name__}"


def _looks_like_autoencoder(sd: dict) -> bool:
    return any(str(k).startswith(("encoder.", "decoder.", "quant_conv_mu")) for k in sd)


def _looks_like_rflow(sd: dict) -> bool:
    keys = set(map(str, sd))
    return "class_embedding.weight" in keys or (
        "spacing_layer.0.weight" in keys and "top_region_index_layer.0.weight" not in keys
    )


def load_strict(module: torch.nn.Module, state_dict: dict, what: str, path: str | Path) -> None:
    """``load_state_dict(strict=True)``, turning key/shape mismatches into a short explanation."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state_dict
        and hasattr(state_dict[k], "shape")
        and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", wrong),
        ):
            if items:
                parts.append(f"{len(items)} {label} (e.g. {', '.join(items[:3])})")
        raise CheckpointError(
            f"The {what} checkpoint {str(path)!r} does not fit the MAISI v1 architecture: "
            + "; ".join(parts)
            + ".",
            remedy="Give the MAISI v1 DDPM files, not the later rflow ones or another model. "
            + WEIGHTS_SOURCE,
        )
    module.load_state_dict(state_dict, strict=True)


def load_autoencoder_weights(module: torch.nn.Module, path: str | Path) -> None:
    """Load the official autoencoder file (a plain state dict) strictly into ``module``."""
    obj = read_checkpoint(path, "autoencoder")
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
            f"found {_describe(obj)}.",
            remedy=WEIGHTS_SOURCE,
        )
    load_strict(module, obj, "autoencoder", path)


def load_unet_weights(module: torch.nn.Module, path: str | Path) -> float:
    """Load the official U-Net file strictly into ``module``; return its ``scale_factor``."""
    obj = read_checkpoint(path, "diffusion U-Net")
    if isinstance(obj, dict) and _looks_like_autoencoder(obj):
        raise CheckpointError(
            f"The diffusion U-Net checkpoint {str(path)!r} is an autoencoder state dict "
            "(its keys start with encoder./decoder.).",
            remedy="Give diff_unet_3d_ddpm.pt as the U-Net and this file as the autoencoder.",
        )
    if not isinstance(obj, dict) or any(k not in obj for k in UNET_FILE_KEYS):
        raise CheckpointError(
            f"The diffusion U-Net checkpoint {str(path)!r} should be a dict with keys "
            f"{list(UNET_FILE_KEYS)} (plus epoch, loss, num_train_timesteps); found {_describe(obj)}.",
            remedy=WEIGHTS_SOURCE,
        )
    sd = obj["unet_state_dict"]
    if isinstance(sd, dict) and _looks_like_rflow(sd):
        raise CheckpointError(
            f"The diffusion U-Net checkpoint {str(path)!r} holds the later MAISI rflow U-Net "
            "(class embeddings / spacing-only conditioning), not the v1 DDPM U-Net MedDIFT uses.",
            remedy="Give diff_unet_3d_ddpm.pt (MAISI v1, DDPM). " + WEIGHTS_SOURCE,
        )
    load_strict(module, sd, "diffusion U-Net", path)
    scale = obj["scale_factor"]
    scale = float(scale.item() if isinstance(scale, torch.Tensor) else scale)
    if not (scale > 0 and scale == scale):
        raise CheckpointError(
            f"The diffusion U-Net checkpoint {str(path)!r} has an invalid scale_factor {scale}.",
            remedy=WEIGHTS_SOURCE,
        )
    return scale
