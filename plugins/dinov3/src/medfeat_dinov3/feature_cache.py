"""Slice tokens kept on disk between runs, keyed by what determines them.

A slice backbone's tokens depend only on the image's voxels and geometry, the weights, the
encoding options and the device's arithmetic (precision, torch/transformers versions). The key is a
SHA-256 over all of these, so a changed image, checkpoint or option is a miss, never a stale hit.
Only the encoded (anchor) slices are stored; the slices in between are interpolated on load as
when they were computed. Files are written atomically (a temporary sibling renamed into place), so
a run stopped mid-write leaves no partial file; an unreadable or mismatching file is a miss and is
overwritten.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from medfeat.api import Image, atomic_path

#: bumped whenever the way tokens are computed changes (old files become misses)
CACHE_FORMAT = 1


def _update_with_tensor(h, tensor: torch.Tensor) -> None:
    t = tensor.detach().to("cpu").contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.view(torch.uint8).numpy() if t.numel() else b"")


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 of a module's class, its config (when it has one) and every state tensor."""
    h = hashlib.sha256(type(module).__qualname__.encode())
    config = getattr(module, "config", None)
    if config is not None and hasattr(config, "to_json_string"):
        h.update(config.to_json_string(use_diff=False).encode())
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        _update_with_tensor(h, tensor)
    return h.hexdigest()


def image_digest(image: Image) -> str:
    """SHA-256 of the voxels (dtype, shape, values) and the grid (spacing, origin, direction)."""
    data = np.ascontiguousarray(image.numpy())
    h = hashlib.sha256(f"{data.dtype.str}{data.shape}".encode())
    h.update(data.view(np.uint8).reshape(-1))
    grid = image.grid
    for part in (grid.spacing, grid.origin, np.asarray(grid.direction).ravel().tolist()):
        h.update(json.dumps([float(v) for v in part]).encode())
    return h.hexdigest()


def cache_key(image: Image, weights: str, options: dict, device: torch.device) -> str:
    """The file name stem of ``image``'s tokens under ``weights`` and the encoding ``options``."""
    import transformers

    what = {
        "format": CACHE_FORMAT,
        "image": image_digest(image),
        "weights": weights,
        "options": options,
        "device": device.type,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


class TokenCache:
    """A folder of ``<key>.pt`` files holding the anchor-slice tokens of one volume each."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.pt"

    def load(self, key: str, anchors: list[int], shape: tuple[int, ...]) -> torch.Tensor | None:
        """The stored tokens ``[len(anchors), *shape]``, or ``None`` (absent, unreadable, other plan)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            tokens = state["tokens"]
            if state["anchors"] != list(anchors) or tuple(tokens.shape) != (len(anchors), *shape):
                return None
            return tokens.float()
        except Exception:  # a damaged file is recomputed and rewritten, never trusted
            return None

    def store(self, key: str, anchors: list[int], tokens: torch.Tensor) -> Path:
        path = self.path(key)
        with atomic_path(path) as tmp:
            torch.save({"anchors": list(anchors), "tokens": tokens.detach().cpu()}, tmp)
        return path
