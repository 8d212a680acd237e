"""Progress without a terminal (plain lines with counts and time estimates) and medfeat.log."""

from __future__ import annotations

import logging

import pytest

from medfeat.errors import InputFileError
from medfeat.progress import Progress, format_duration, progress_line, time_left_s


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plain(interval_s: float = 10.0, verbosity: int = 0) -> tuple[Progress, FakeClock]:
    clock = FakeClock()
    return Progress(
        enabled=False, verbosity=verbosity, plain_interval_s=interval_s, clock=clock
    ), clock


def test_durations_and_estimates():
    assert format_duration(4.25) == "4.2 s"
    assert format_duration(42) == "42 s"
    assert format_duration(125) == "2 min 05 s"
    assert format_duration(3 * 3600 + 120) == "3 h 02 min"
    assert time_left_s(30.0, 0.25) == pytest.approx(90.0)
    assert time_left_s(5.0, 0.0) is None
    line = progress_line("Segmenting", 30.0, done=3, total=12)
    assert line == "Segmenting: 3/12, 25 %, 30 s elapsed, ~1 min 30 s left"


def test_a_long_loop_prints_counts_and_time_left_without_a_terminal(capsys):
    progress, clock = plain(interval_s=10.0)
    seen = []
    for item in progress.track(range(10), "Cases"):
        clock.now += 4.0  # each item takes 4 s
        seen.append(item)
    assert seen == list(range(10))
    lines = capsys.readouterr().err.strip().splitlines()
    # a line after >= 10 s (item 3: 12 s), then every 10 s more, then the end
    assert lines[0] == "Cases: 3/10, 30 %, 12 s elapsed, ~28 s left"
    assert lines[1].startswith("Cases: 6/10, 60 %, 24 s elapsed")
    assert lines[-1] == "Cases: 10 done in 40 s"


def test_a_quick_loop_stays_silent(capsys):
    progress, clock = plain(interval_s=10.0)
    for _ in progress.track(range(5), "Cases"):
        clock.now += 0.1
    assert capsys.readouterr().err == ""


def test_quiet_prints_nothing(capsys):
    progress, clock = plain(interval_s=1.0, verbosity=-1)
    for _ in progress.track(range(5), "Cases"):
        clock.now += 5.0
    assert capsys.readouterr().err == ""


def test_numerical_code_reports_percent_and_time_left(capsys):
    progress, clock = plain(interval_s=10.0)
    report = progress.callback("B-spline")
    assert report is not None
    for i in range(1, 21):
        clock.now += 3.0
        report("level 1/1", i / 20)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == "B-spline: level 1/1: 20 %, 12 s elapsed, ~48 s left"
    assert len(lines) == 4  # every 10 s until 48 s; the final 100 % goes to the log only


def test_a_long_status_step_says_when_it_is_done(capsys):
    progress, clock = plain(interval_s=10.0)
    with progress.status("optimisation"):
        clock.now += 75.0
    with progress.status("writing outputs"):
        clock.now += 1.0
    assert capsys.readouterr().err.strip().splitlines() == ["optimisation: done in 1 min 15 s"]


def test_log_file_records_everything(tmp_path, capsys):
    progress, clock = plain(interval_s=10.0, verbosity=-1)  # -q: the console says nothing...
    path = progress.attach_log(tmp_path)
    assert path == tmp_path / "medfeat.log"
    progress.log("[bold]case-1[/bold]: TRE 4.2 -> 1.1 mm")
    progress.log("a detail", level=1)
    progress.warn("this run used RANDOM weights")
    logging.getLogger("medfeat.io").info("a record of the medfeat logger")
    for _ in progress.track(range(3), "Cases"):
        clock.now += 2.0
    with progress.status("optimisation"):
        clock.now += 3.0
    progress.detach_log()
    logging.getLogger("medfeat.io").info("after the log was closed")
    assert capsys.readouterr().err == ""
    text = path.read_text()  # ...but the log has everything, without markup
    for expected in (
        "INFO    case-1: TRE 4.2 -> 1.1 mm",
        "DEBUG   a detail",
        "WARNING this run used RANDOM weights",
        "INFO    a record of the medfeat logger",
        "Cases: started (3 items)",
        "Cases: 3 done in 6.0 s",
        "optimisation: done in 3.0 s",
        "run finished",
    ):
        assert expected in text
    assert "[bold]" not in text and "after the log was closed" not in text


def test_log_file_records_a_failure(tmp_path):
    progress, _ = plain()
    with pytest.raises(InputFileError), progress.logging_to(tmp_path):
        progress.log("reading inputs")
        raise InputFileError("fixed.nii.gz is truncated", remedy="Copy it again.")
    text = (tmp_path / "medfeat.log").read_text()
    assert "ERROR   run failed: InputFileError: fixed.nii.gz is truncated" in text
    progress.log("not logged any more")
    assert "not logged any more" not in (tmp_path / "medfeat.log").read_text()


def test_attaching_again_appends_and_moves(tmp_path):
    progress, _ = plain()
    progress.attach_log(tmp_path / "a")
    progress.log("first")
    progress.attach_log(tmp_path / "b")
    progress.log("second")
    progress.detach_log()
    assert "first" in (tmp_path / "a" / "medfeat.log").read_text()
    assert "second" not in (tmp_path / "a" / "medfeat.log").read_text()
    assert "second" in (tmp_path / "b" / "medfeat.log").read_text()
