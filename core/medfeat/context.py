"""What every component factory receives besides its config: device, seed, progress, timings."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from medfeat.progress import Progress


def resolve_device(spec: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; validates ``cuda:N``."""
    import torch

    from medfeat.errors import ResourceError

    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ResourceError(
                f"Device {spec!r} was requested but CUDA is not available here.",
                remedy="Use --device cpu (or auto).",
            )
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise ResourceError(
                f"Device {spec!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)."
            )
    elif spec != "cpu":
        from medfeat.errors import ConfigError

        raise ConfigError(f"unknown device {spec!r}.", remedy="Use auto, cpu, cuda or cuda:N.")
    return spec


def process_rank() -> tuple[int, int]:
    """(rank, world size) of this process under torchrun (``RANK``/``WORLD_SIZE``), else (0, 1).

    Only rank 0 writes a run's summary files and talks to the terminal; components decide
    themselves how ranks share the work (e.g. DistributedDataParallel training).
    """
    from medfeat.distributed import env_rank

    return env_rank()


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch RNGs."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class RunContext:
    """Shared run state handed to factories (the pipeline keeps its own feature cache)."""

    device: str = "cpu"
    seed: int = 0
    progress: Progress = field(default_factory=Progress)
    out_dir: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: Components that ran with random (untrained) weights; the run's outputs are then no result.
    random_weights: list[str] = field(default_factory=list)

    def note_random_weights(self, what: str) -> None:
        """Record that ``what`` (a component and its model) runs with random weights, and say so.

        The run's ``metrics.json`` and ``provenance.json`` then list it, and the CLI ends with a
        warning that the output is a speed/plumbing check, not a result.
        """
        if what not in self.random_weights:
            self.random_weights.append(what)
            self.progress.warn(f"{what} runs with RANDOM weights: its output is not a result.")

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Time a step into ``timings`` (seconds, accumulated) and show it as a status line."""
        import time

        start = time.perf_counter()
        with self.progress.status(step):
            yield
        self.timings[step] = self.timings.get(step, 0.0) + time.perf_counter() - start
