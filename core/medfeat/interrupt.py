"""Stop long loops at a step boundary on Ctrl-C / SIGTERM, so they can save before exiting.

A training loop wraps itself in :func:`stop_requests` and asks :meth:`StopRequest.agree` once per
step whether to stop; when it must, it saves inside :meth:`StopRequest.saving` and raises
:class:`~medfeat.errors.Interrupted`. A second signal interrupts at once (``KeyboardInterrupt``),
for loops stuck inside a long step, unless it comes within ``repeat_grace_s`` of the first (torchrun
forwards the terminal's Ctrl-C to workers that already got it) or while a checkpoint is being
written. Outside the main thread (where handlers cannot be installed) the guard never fires.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from medfeat.distributed import agree_any, barrier

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Set by the first SIGINT/SIGTERM received inside :func:`stop_requests`."""

    def __init__(self, repeat_grace_s: float = 2.0) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self.repeat_grace_s = repeat_grace_s
        self._first_at = 0.0
        self._saving = False

    def agree(self, device: str = "cpu", *others: bool) -> tuple[bool, ...]:
        """``(stop requested on any rank, *others OR-ed over ranks)``: one collective per step, so
        that all ranks leave the loop at the same step, whatever the reason."""
        return agree_any((self.requested, *others), device)

    def any_rank(self, device: str = "cpu") -> bool:
        """Whether any process was asked to stop (a collective, see :func:`agree_any`)."""
        return self.agree(device)[0]

    @contextmanager
    def saving(self) -> Iterator[None]:
        """Signals do not interrupt the block (a checkpoint being written); ranks meet at its end."""
        self._saving = True
        try:
            yield
        finally:
            # ranks meet even when the save failed (its error is the one that propagates)
            with contextlib.suppress(Exception):
                barrier()
            self._saving = False

    def _handle(self, signum: int, frame: object) -> None:
        now = time.monotonic()
        if not self.requested:
            self.requested, self._first_at = True, now
            self.signal_name = signal.Signals(signum).name
        elif not self._saving and now - self._first_at > self.repeat_grace_s:
            raise KeyboardInterrupt


@contextmanager
def stop_requests(repeat_grace_s: float = 2.0) -> Iterator[StopRequest]:
    """Turn SIGINT/SIGTERM into a polled flag for the duration of the block (main thread only)."""
    guard = StopRequest(repeat_grace_s)
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return
    previous = {s: signal.signal(s, guard._handle) for s in SIGNALS}
    try:
        yield guard
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class StopSignal(BaseException):
    """Raised in the main thread by :func:`signals_raise` on the first SIGINT/SIGTERM.

    A ``BaseException`` (like ``KeyboardInterrupt``), so that the work in progress unwinds through
    every ``except Exception`` and its ``finally`` blocks clean up.
    """

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


class SignalGuard:
    """State of :func:`signals_raise`: the signal received, and whether raising is held back."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._held = 0

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    @contextmanager
    def held(self) -> Iterator[None]:
        """A signal inside the block (a summary being written) is remembered, not raised; it is
        raised when the block ends, unless one was raised already."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
        if self._held == 0 and self.signal_name is not None and not self._raised:
            self._raised = True
            raise StopSignal(self.signal_name)

    _raised = False

    def _handle(self, signum: int, frame: object) -> None:
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name
        if self._held or self._raised:
            return
        self._raised = True
        raise StopSignal(self.signal_name)


@contextmanager
def signals_raise() -> Iterator[SignalGuard]:
    """Within the block, the first SIGINT/SIGTERM raises :class:`StopSignal` at once (the case in
    progress is abandoned and cleaned up) and later ones are ignored, so that the caller can write
    its summary. Outside the main thread nothing is installed."""
    guard = SignalGuard()
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return
    previous = {s: signal.signal(s, guard._handle) for s in SIGNALS}
    try:
        yield guard
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
