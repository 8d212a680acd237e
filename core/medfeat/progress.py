"""Progress reporting with rich: bars on a terminal, silence otherwise."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class Progress:
    """Thin wrapper over :mod:`rich.progress`; ``enabled`` defaults to "stderr is a terminal"."""

    def __init__(self, enabled: bool | None = None, verbosity: int = 0) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.verbosity = verbosity
        self._console = None

    @property
    def console(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, quiet=self.verbosity < 0)
        return self._console

    def log(self, message: str, level: int = 0) -> None:
        """Print a message when verbosity allows (``-q`` silences level 0, ``-v`` shows level 1)."""
        if self.verbosity >= level:
            self.console.print(message)

    def warn(self, message: str) -> None:
        """A warning the user must see (on stderr; ``-q`` silences it like every other message)."""
        self.console.print(f"[bold yellow]Warning:[/bold yellow] {message}", markup=True)

    def track(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        """Iterate with a progress bar when enabled."""
        if not self.enabled or self.verbosity < 0:
            yield from items
            return
        from rich.progress import track

        yield from track(
            items, description=description, total=total, console=self.console, transient=True
        )

    @contextlib.contextmanager
    def status(self, description: str) -> Iterator[None]:
        """A spinner for a step of unknown length."""
        if not self.enabled or self.verbosity < 0:
            yield
            return
        with self.console.status(description):
            yield

    def callback(self, description: str) -> Any:
        """A ``callable(step, fraction)`` for numerical code that reports its own progress."""
        if not self.enabled or self.verbosity < 0:
            return None
        from rich.progress import Progress as RichProgress

        bar = RichProgress(console=self.console, transient=True)
        task = bar.add_task(description, total=1.0)
        bar.start()

        def update(step: str, fraction: float) -> None:
            bar.update(task, completed=fraction, description=f"{description}: {step}")
            if fraction >= 1.0:
                bar.stop()

        return update
