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
