"""Reading and writing the plugin's checkpoints (atomic writes, strict loads, clear errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from medfeat.api import CheckpointError

DDPM_FORMAT = "medfeat-bpr-diffusion/ddpm"
HEAD_FORMAT = "medfeat-bpr-diffusion/probe"
SOURCE = (
    "It is written by the `bpr-ddpm` pretrainer (pretraining pipeline) of medfeat-bpr-diffusion."
)


def save_atomic(obj: dict, path: Path) -> Path:
    """``torch.save`` to a temporary sibling, then rename: a crash never leaves a half file."""
    from medfeat.api import atomic_path

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


def load_torch_file(path: Path, expected: str, source: str) -> Any:
    """``torch.load`` (weights only, on the CPU) of a local file; a missing, truncated or foreign
    file is a :class:`CheckpointError` that says what was ``expected`` and where it comes from."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist (expected {expected}).", remedy=source)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, ...
        raise CheckpointError(
            f"{path} could not be read as a torch file "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); it may be truncated.",
            remedy=source,
        ) from None


def state_dict_of(obj: Any, path: Path, marker: str, what: str, source: str) -> dict:
    """The state dict in a loaded file (plain, or a Lightning checkpoint's ``state_dict``); a file
    none of whose keys contains ``marker`` is refused as not being ``what``."""
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not any(marker in k for k in state):
        found = sorted(state)[:3] if isinstance(state, dict) else type(obj).__name__
        raise CheckpointError(
            f"{path} is not {what} (no key with `{marker}`; found {found}).", remedy=source
        )
    return state


def read_checkpoint(path: Path, expected_format: str, source: str = SOURCE) -> dict:
    """Load a checkpoint dict and check its format tag; every failure is a :class:`CheckpointError`."""
    obj = load_torch_file(path, f"a {expected_format} checkpoint", source)
    found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
    if found != expected_format:
        raise CheckpointError(
            f"Checkpoint {path} is of kind {found!r}, expected {expected_format!r}.", remedy=source
        )
    return obj


def load_state_strict(module: nn.Module, state: dict[str, Any], path: Path, what: str) -> None:
    """``load_state_dict(strict=True)`` with a readable summary of missing/unexpected/mis-shaped keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: expected {tuple(own[k].shape)}, found {tuple(state[k].shape)}"
        for k in sorted(set(own) & set(state))
        if hasattr(state[k], "shape") and tuple(own[k].shape) != tuple(state[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {'; '.join(shapes[:2])})")
        raise CheckpointError(
            f"{path} does not match the {what} architecture: {'; '.join(parts)}.",
            remedy="Use the weights written for this architecture and configuration.",
        )
    module.load_state_dict(state, strict=True)
