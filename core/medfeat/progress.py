"""Progress reporting: rich bars on a terminal, plain progress lines otherwise, and ``medfeat.log``.

On a terminal, long stages show a bar with the iteration count, the time spent and an estimate of
the time left. Without a terminal (a batch job, a pipe), a stage that runs longer than
``plain_interval_s`` prints a plain line every ``plain_interval_s`` seconds (iteration count, time
spent, time left) and one when it ends; quick stages stay silent. :meth:`Progress.attach_log` also
writes every message and stage to ``medfeat.log`` in the output folder, whatever the verbosity.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, TypeVar

T = TypeVar("T")

#: Name of the log file :meth:`Progress.attach_log` writes in an output folder.
LOG_FILE = "medfeat.log"


def format_duration(seconds: float) -> str:
    """``"8 s"``, ``"2 min 05 s"``, ``"1 h 03 min"``: a duration for a person."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def time_left_s(elapsed_s: float, fraction: float) -> float | None:
    """Estimated seconds left after ``elapsed_s`` seconds at ``fraction`` done (linear rate)."""
    if fraction <= 0 or elapsed_s < 0:
        return None
    return elapsed_s * max(0.0, 1.0 - fraction) / fraction


def progress_line(
    description: str,
    elapsed_s: float,
    *,
    done: int | None = None,
    total: int | None = None,
    fraction: float | None = None,
) -> str:
    """One plain progress line: what, how far (count and/or percent), time spent and time left."""
    if fraction is None and done is not None and total:
        fraction = done / total
    parts = []
    if done is not None:
        parts.append(f"{done}/{total}" if total else f"{done}")
    if fraction is not None:
        parts.append(f"{100.0 * min(max(fraction, 0.0), 1.0):.0f} %")
    parts.append(f"{format_duration(elapsed_s)} elapsed")
    left = time_left_s(elapsed_s, fraction) if fraction is not None else None
    if left is not None and fraction is not None and fraction < 1.0:
        parts.append(f"~{format_duration(left)} left")
    return f"{description}: " + ", ".join(parts)


def _plain(message: str) -> str:
    """``message`` without rich markup (``[bold]x[/bold]`` -> ``x``)."""
    try:
        from rich.text import Text

        return Text.from_markup(message).plain
    except Exception:  # malformed markup: keep the text as it is
        return message


class _LogHandler(logging.Handler):
    """Sends records of the ``medfeat`` logger (and its children) to the log file."""

    def __init__(self, progress: Progress) -> None:
        super().__init__(level=logging.INFO)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.progress._write(record.levelname, record.getMessage())
        except Exception:  # logging must never break a run
            self.handleError(record)


class _Throttle:
    """Decides when a plain progress line is due: after ``interval_s`` and then every ``interval_s``."""

    def __init__(self, interval_s: float, clock: Callable[[], float]) -> None:
        self.interval_s, self.clock = interval_s, clock
        self.start = self.last = clock()
        self.printed = 0

    @property
    def elapsed(self) -> float:
        return self.clock() - self.start

    def due(self) -> bool:
        now = self.clock()
        if now - self.last >= self.interval_s:
            self.last = now
            self.printed += 1
            return True
        return False


class Progress:
    """Progress and messages of a run.

    ``enabled`` (rich bars and spinners) defaults to "stderr is a terminal". ``verbosity``: ``-q``
    (negative) silences the console, ``-v`` shows level-1 messages; the log file gets everything.
    ``plain_interval_s``: without a terminal, seconds between plain progress lines of a long stage.
    """

    def __init__(
        self,
        enabled: bool | None = None,
        verbosity: int = 0,
        plain_interval_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.verbosity = verbosity
        self.plain_interval_s = plain_interval_s
        self.clock = clock
        self.log_path: Path | None = None
        self._console = None
        self._log_file: IO[str] | None = None
        self._handler: _LogHandler | None = None

    @property
    def console(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, quiet=self.verbosity < 0)
        return self._console

    @property
    def _bars(self) -> bool:
        return self.enabled and self.verbosity >= 0

    # ------------------------------------------------------------------------------ log file
    def attach_log(self, out_dir: str | Path) -> Path:
        """Write every message and stage from now on to ``out_dir/medfeat.log`` (appended).

        Records of Python's ``medfeat`` logger go there too. Calling it again moves the log to the
        new folder. Returns the log file's path.
        """
        from medfeat import __version__

        self.detach_log()
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = out_dir / LOG_FILE
        self._log_file = open(self.log_path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self._write("INFO", f"medfeat {__version__}: {' '.join(sys.argv)}")
        self._handler = _LogHandler(self)
        logger = logging.getLogger("medfeat")
        logger.addHandler(self._handler)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
        return self.log_path

    def detach_log(self, error: BaseException | None = None) -> None:
        """Close the log file; with ``error``, record that the run failed and why."""
        if self._log_file is None:
            return
        if error is not None:
            reason = getattr(error, "message", None) or str(error) or type(error).__name__
            self._write("ERROR", f"run failed: {type(error).__name__}: {reason}")
        else:
            self._write("INFO", "run finished")
        if self._handler is not None:
            logging.getLogger("medfeat").removeHandler(self._handler)
            self._handler = None
        self._log_file.close()
        self._log_file = None

    @contextlib.contextmanager
    def logging_to(self, out_dir: str | Path) -> Iterator[Path]:
        """``with progress.logging_to(out_dir):`` attach the log, and close it (noting a failure)."""
        path = self.attach_log(out_dir)
        try:
            yield path
        except BaseException as exc:
            self.detach_log(exc)
            raise
        self.detach_log()

    def _write(self, level: str, message: str) -> None:
        if self._log_file is None:
            return
        stamp = datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
        for line in _plain(message).splitlines() or [""]:
            self._log_file.write(f"{stamp} {level:<7} {line}\n")

    # ------------------------------------------------------------------------------ messages
    def log(self, message: str, level: int = 0) -> None:
        """Print a message when verbosity allows (``-q`` silences level 0, ``-v`` shows level 1)."""
        self._write("INFO" if level <= 0 else "DEBUG", message)
        if self.verbosity >= level:
            self.console.print(message)

    def warn(self, message: str) -> None:
        """A warning the user must see (on stderr; ``-q`` silences it like every other message)."""
        self._write("WARNING", message)
        self.console.print(f"[bold yellow]Warning:[/bold yellow] {message}", markup=True)

    def _plain_line(self, line: str) -> None:
        """A plain progress line: to the log file, and to stderr without a terminal."""
        self._write("INFO", line)
        if not self.enabled and self.verbosity >= 0:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    # ------------------------------------------------------------------------------ stages
    def track(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        """Iterate with a bar (count, time spent, time left) on a terminal, plain lines otherwise."""
        if total is None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        throttle = _Throttle(self.plain_interval_s, self.clock)
        self._write("INFO", f"{description}: started" + (f" ({total} items)" if total else ""))
        done = 0
        if self._bars:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
            )
            with RichProgress(*columns, console=self.console, transient=True) as bar:
                task = bar.add_task(description, total=total)
                for item in items:
                    yield item
                    done += 1
                    bar.advance(task)
                    if throttle.due():
                        self._write(
                            "INFO",
                            progress_line(description, throttle.elapsed, done=done, total=total),
                        )
        else:
            for item in items:
                yield item
                done += 1
                if throttle.due():
                    self._plain_line(
                        progress_line(description, throttle.elapsed, done=done, total=total)
                    )
        final = f"{description}: {done} done in {format_duration(throttle.elapsed)}"
        if throttle.printed and not self._bars:
            self._plain_line(final)
        else:
            self._write("INFO", final)

    @contextlib.contextmanager
    def status(self, description: str) -> Iterator[None]:
        """A spinner for a step of unknown length (plain lines while it lasts, without a terminal)."""
        start = self.clock()
        self._write("INFO", f"{description}: started")
        if self._bars:
            with self.console.status(description):
                yield
        else:
            yield
        elapsed = self.clock() - start
        line = f"{description}: done in {format_duration(elapsed)}"
        if not self._bars and elapsed >= self.plain_interval_s:
            self._plain_line(line)
        else:
            self._write("INFO", line)

    def callback(self, description: str) -> Callable[[str, float], None] | None:
        """A ``callable(step, fraction)`` for numerical code that reports its own progress.

        ``fraction`` runs from 0 to 1 within each ``step``; a new step starts its own estimate. On a
        terminal it drives a bar; otherwise it prints a plain line every ``plain_interval_s``.
        Returns ``None`` when neither the console nor a log file would show anything.
        """
        if self.verbosity < 0 and self._log_file is None:
            return None
        return _StepReporter(self, description)


class _StepReporter:
    """The ``callable(step, fraction)`` that :meth:`Progress.callback` returns."""

    def __init__(self, progress: Progress, description: str) -> None:
        self.progress, self.description = progress, description
        self.step: str | None = None
        self.step_start = progress.clock()
        self.throttle = _Throttle(progress.plain_interval_s, progress.clock)
        self.bar: Any = None
        self.task: Any = None

    def __call__(self, step: str, fraction: float) -> None:
        p, now = self.progress, self.progress.clock()
        if step != self.step:  # a new step starts its own clock (the first one at creation)
            if self.step is not None:
                self.step_start = now
            self.step = step
        label = f"{self.description}: {step}"
        if p._bars:
            self._update_bar(label, fraction)
        if fraction >= 1.0:
            p._write("INFO", f"{label}: done in {format_duration(now - self.step_start)}")
        elif self.throttle.due():
            line = progress_line(label, now - self.step_start, fraction=fraction)
            if p._bars:
                p._write("INFO", line)
            else:
                p._plain_line(line)

    def _update_bar(self, label: str, fraction: float) -> None:
        if self.bar is None:
            from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f} %"),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
                console=self.progress.console,
                transient=True,
            )
            self.task = self.bar.add_task(label, total=1.0)
            self.bar.start()
        if self.bar.tasks[0].description != label:
            self.bar.reset(self.task, description=label)
        self.bar.update(self.task, completed=fraction, description=label)
        if fraction >= 1.0:  # this step is done; a later step starts a fresh bar
            self.bar.stop()
            self.bar = None
