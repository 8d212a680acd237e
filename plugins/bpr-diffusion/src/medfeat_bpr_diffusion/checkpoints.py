"""Checkpoints: format tags, where files come from, and reading official weight files into the
networks (APE, Body Part Regression). Every file is read by medfeat's safe reader: no file ever
runs code (``torch.export`` programs, which unpickle, are not accepted).

Reading, strict loading and atomic writing are medfeat's (``read_checkpoint``,
``load_state_dict_strict``, ``save_checkpoint`` in :mod:`medfeat.api`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from medfeat.api import CheckpointError, load_state_dict_strict, read_checkpoint, read_state_dict

DDPM_FORMAT = "medfeat-bpr-diffusion/ddpm"
HEAD_FORMAT = "medfeat-bpr-diffusion/probe"
SOURCE = (
    "It is written by the `bpr-ddpm` pretrainer (pretraining pipeline) of medfeat-bpr-diffusion."
)
APE_SOURCE = (
    "APE (github.com/mishgon/ape, MIT) publishes its training code; train it (or obtain a trained "
    "checkpoint from its authors) and give the local Lightning .ckpt (or the network's state dict)."
)
BPR_SOURCE = (
    "Weights: the public Body Part Regression model of MIC-DKFZ (github.com/MIC-DKFZ/"
    "BodyPartRegression, Zenodo record 5113483, folder public_bpr_model/ with model.pt); download "
    "it yourself and give its local path."
)


def state_dict_with(path: Path, marker: str, what: str, source: str) -> dict[str, torch.Tensor]:
    """The state dict of a published ``what`` file (plain, or a Lightning checkpoint's
    ``state_dict``); a file none of whose keys contains ``marker`` is refused."""
    state = read_state_dict(path, what=what, remedy=source)
    if not any(marker in k for k in state):
        article = "an" if what[:1] in "AEIOU" else "a"
        raise CheckpointError(
            f"{path} is not {article} {what} checkpoint (no key with `{marker}`; "
            f"found {sorted(state)[:3]}).",
            remedy=source,
        )
    return state


def read_ddpm_checkpoint(path: Path) -> dict:
    """A ``bpr-ddpm`` checkpoint: the format-tagged dict of model, EMA, optimiser and config."""
    return read_checkpoint(path, what="bpr-ddpm", remedy=SOURCE, format=DDPM_FORMAT)


def load_ape(path: Path) -> torch.nn.Module:
    """The published APE network with weights from a local file, loaded with ``strict=True``."""
    from medfeat_bpr_diffusion.networks import APENetwork

    path = Path(path)  # a Lightning .ckpt of APE's training or a state dict of its network
    state = state_dict_with(path, "fpn.stem.conv.weight", "APE", APE_SOURCE)
    # Lightning: the network lives under `nn.`, the learned scale beside it
    state = {k.removeprefix("nn."): v for k, v in state.items()}
    net = APENetwork()
    what = "APE (ConvNeXt-FPN U-Net, published configuration)"
    load_state_dict_strict(net, state, what=what, path=path)
    return net.eval()


def load_bpr(path: Path) -> torch.nn.Module:
    """The public ``model.pt`` (a state dict, or a Lightning checkpoint holding one), strictly."""
    from medfeat_bpr_diffusion.networks import BodyPartRegressionNet

    path = Path(path)
    file = path / "model.pt" if path.is_dir() else path
    state = state_dict_with(file, "fc7.", "Body Part Regression", BPR_SOURCE)
    net = BodyPartRegressionNet()
    load_state_dict_strict(net, state, what="Body Part Regression (VGG16)", path=file)
    return net.eval()
