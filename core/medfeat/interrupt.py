"""Stop long loops at a step boundary on Ctrl-C / SIGTERM, so they can save before exiting.

A training loop wraps itself in :func:`stop_requests` and polls ``requested`` once per step; when it
is set the loop writes its checkpoint and raises :class:`~medfeat.errors.Interrupted`. A second
signal interrupts at once (``KeyboardInterrupt``), for loops stuck inside a long step. Outside the
main thread (where handlers cannot be installed) the guard never fires and signals behave as usual.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Set by the first SIGINT/SIGTERM received inside :func:`stop_requests`."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None

    def any_rank(self, device: str = "cpu") -> bool:
        """Whether any process of a distributed run was asked to stop (a collective: every rank
        must call it at the same step, so that all of them leave the loop together)."""
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return self.requested
        flag = torch.tensor([float(self.requested)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name


@contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """Turn SIGINT/SIGTERM into a polled flag for the duration of the block (main thread only)."""
    guard = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return
    previous = {s: signal.signal(s, guard._handle) for s in SIGNALS}
    try:
        yield guard
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
