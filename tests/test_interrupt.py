"""Stop requests: the first signal sets a flag, the second interrupts, handlers are restored."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from medfeat.interrupt import stop_requests


def test_first_signal_sets_the_flag_second_interrupts_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with stop_requests(repeat_grace_s=0.0) as guard:
        assert not guard.requested and guard.agree("cpu", False, True) == (False, False, True)
        os.kill(os.getpid(), signal.SIGTERM)
        assert guard.requested and guard.signal_name == "SIGTERM" and guard.any_rank()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_a_repeated_signal_soon_after_or_during_a_save_does_not_interrupt():
    """torchrun forwards the terminal's Ctrl-C to workers that already received it."""
    with stop_requests(repeat_grace_s=60.0) as guard:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # within the grace period: the same request
        assert guard.requested and guard.signal_name == "SIGINT"
    with stop_requests(repeat_grace_s=0.0) as guard:
        os.kill(os.getpid(), signal.SIGTERM)
        with guard.saving():
            os.kill(os.getpid(), signal.SIGTERM)  # a checkpoint is being written: not now
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)


def test_outside_the_main_thread_the_guard_installs_nothing():
    seen = {}

    def work():
        with stop_requests() as guard:
            seen["handler"] = signal.getsignal(signal.SIGTERM)
            seen["requested"] = guard.requested

    before = signal.getsignal(signal.SIGTERM)
    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen == {"handler": before, "requested": False}


def test_signals_raise_stops_at_once_then_ignores_repeats_and_restores_handlers():
    from medfeat.interrupt import StopSignal, signals_raise

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with signals_raise() as guard:
        with pytest.raises(StopSignal) as info:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10**6):  # the handler raises at the next bytecode
                pass
        assert info.value.signal_name == "SIGTERM" and guard.requested
        os.kill(os.getpid(), signal.SIGINT)  # while the summary is written: ignored
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    with signals_raise() as guard, pytest.raises(StopSignal), guard.held():
        os.kill(os.getpid(), signal.SIGINT)  # remembered, raised when the block ends
        assert guard.requested
