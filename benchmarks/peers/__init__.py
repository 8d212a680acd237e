"""Wrappers running established external registration tools ("peers") for benchmarks.

Every tool module exposes the same small API (see :class:`PeerTool`)::

    available() -> bool
    unavailable_reason() -> str | None
    version() -> str
    register_and_map(fixed_path, moving_path, fixed_points_world_lps, workdir, threads=2)
        -> PeerResult

``register_and_map`` maps fixed-image points (LPS world mm, ITK physical coordinates) into the
moving image's space. Tools are optional: nothing here imports a tool at package import time.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

import numpy as np

from .common import PeerFailedError, PeerResult, PeerUnavailableError

__all__ = [
    "PEERS",
    "PeerFailedError",
    "PeerResult",
    "PeerTool",
    "PeerUnavailableError",
    "get_peer",
]

#: Tool name -> module name inside this package, in the order benchmarks report them.
PEERS: dict[str, str] = {
    "greedy": "greedy",
    "convexadam": "convexadam",
    "elastix": "elastix",
    "niftyreg": "niftyreg",
    "ants": "antspy",
}


class PeerTool(Protocol):
    """Structural type of a peer tool module."""

    TOOL: str
    INSTALL_HINT: str

    def available(self) -> bool: ...

    def unavailable_reason(self) -> str | None: ...

    def version(self) -> str: ...

    def register_and_map(
        self,
        fixed_path: str | Path,
        moving_path: str | Path,
        fixed_points_world_lps: np.ndarray,
        workdir: Path,
        threads: int = 2,
    ) -> PeerResult: ...


def get_peer(name: str) -> PeerTool:
    """Import and return the module wrapping tool ``name`` (a key of :data:`PEERS`)."""
    try:
        module = PEERS[name]
    except KeyError:
        raise KeyError(f"unknown peer tool {name!r}; known: {', '.join(PEERS)}") from None
    return importlib.import_module(f"{__name__}.{module}")  # type: ignore[return-value]
