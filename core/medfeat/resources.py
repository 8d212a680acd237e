"""Memory checks before heavy steps, so a job that cannot fit fails at once with a remedy."""

from __future__ import annotations

from typing import Any

from medfeat.errors import ResourceError


def available_bytes(device: str) -> int:
    """Free memory on ``device`` (host RAM for ``cpu``)."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def check_fits(component: Any, what: str, device: str, *args: Any, **kwargs: Any) -> None:
    """Ask ``component.estimate_memory_bytes(*args)`` (when it has one) and compare with free memory.

    Components that can run out of memory expose that estimate and a ``memory_remedy`` string
    naming the options that reduce it.
    """
    estimate = getattr(component, "estimate_memory_bytes", None)
    if not callable(estimate):
        return
    need = int(estimate(*args, **kwargs))
    have = available_bytes(device)
    if need > have:
        remedy = getattr(component, "memory_remedy", "Use a coarser resolution or smaller inputs.")
        raise ResourceError(
            f"{what} needs about {need / 2**30:.1f} GiB on {device}, but only {have / 2**30:.1f} GiB is free.",
            remedy=remedy,
        )


class PeakMemory:
    """Context manager sampling this process's resident memory in a thread; ``peak_mb`` after exit."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.peak_mb = 0.0

    def __enter__(self) -> PeakMemory:
        import threading

        import psutil

        self._proc = psutil.Process()
        self._stop = threading.Event()
        self.peak_mb = self._proc.memory_info().rss / 2**20

        def sample() -> None:
            while not self._stop.wait(self.interval_s):
                self.peak_mb = max(self.peak_mb, self._proc.memory_info().rss / 2**20)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._proc.memory_info().rss / 2**20)
