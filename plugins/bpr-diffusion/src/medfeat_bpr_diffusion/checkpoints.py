"""What the plugin knows about its checkpoints: format tags, where files come from, marker keys.

Reading, strict loading and atomic writing are medfeat's (``read_checkpoint``,
``load_state_dict_strict``, ``save_checkpoint`` in :mod:`medfeat.api`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from medfeat.api import CheckpointError, read_checkpoint, read_state_dict

DDPM_FORMAT = "medfeat-bpr-diffusion/ddpm"
HEAD_FORMAT = "medfeat-bpr-diffusion/probe"
SOURCE = (
    "It is written by the `bpr-ddpm` pretrainer (pretraining pipeline) of medfeat-bpr-diffusion."
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
