from __future__ import annotations

import io

from clockwork.telemetry.progress import ProgressPrinter, format_duration

from support.units import S


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_prints_at_most_every_interval_plain() -> None:
    clock = FakeClock()
    out = io.StringIO()
    p = ProgressPrinter(total_ns=100 * S, stream=out, interval_s=2.0, clock=clock)
    assert not p.tty
    printed = []
    for step in range(1, 11):  # every 0.5 wall s, 1 sim s per step
        clock.now = 100.0 + 0.5 * step
        printed.append(p.update(step * S, step * 1000))
    # prints at 2.0 and 4.0 wall seconds after the start
    assert printed == [False, False, False, True, False, False, False, True, False, False]
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "\r" not in out.getvalue()
    first = lines[0]
    assert first.startswith("sim   4.0%")
    assert "t=4.0s/100.0s" in first
    assert "requests 4,000" in first
    assert "2,000 req/wall-s" in first
    assert "ETA 0:00:48" in first  # 2 s for 4%: 48 s for the remaining 96%
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    # a finished run is at 100% whatever sim time it ended at (work can end before the total)
    assert lines[2].startswith("done: sim 100.0%")
    assert "t=10.0s/100.0s" in lines[2]
    assert "requests 10,000" in lines[2] and "ETA" not in lines[2]
    p.close()  # a second close prints nothing
    assert p.update(50 * S, 1) is False
    assert len(out.getvalue().splitlines()) == 3


def test_tty_rewrites_one_line() -> None:
    clock = FakeClock()
    out = TtyStream()
    p = ProgressPrinter(total_ns=10 * S, stream=out, interval_s=1.0, clock=clock)
    assert p.tty
    clock.now += 1.0
    assert p.update(5 * S, 10, extra="queue 3")
    clock.now += 1.0
    assert p.update(10 * S, 20)
    text = out.getvalue()
    assert text.count("\r") == 2
    assert "\n" not in text
    assert "queue 3" in text
    p.close(requests_done=25, extra="ok")
    text = out.getvalue()
    assert text.endswith("\n")
    assert text.count("\n") == 1
    last = text.split("\r")[-1]
    assert last.startswith("done: sim 100.0%")
    assert "requests 25" in last and "ETA" not in last and last.rstrip().endswith("ok")


def test_tty_pads_over_longer_previous_line() -> None:
    clock = FakeClock()
    out = TtyStream()
    p = ProgressPrinter(total_ns=10 * S, stream=out, interval_s=1.0, clock=clock)
    clock.now += 1.0
    p.update(S, 1, extra="x" * 40)
    clock.now += 1.0
    p.update(2 * S, 2)
    segments = out.getvalue().split("\r")[1:]
    assert len(segments[1]) == len(segments[0])  # spaces cover the old tail


def test_zero_progress_and_zero_total() -> None:
    clock = FakeClock()
    out = io.StringIO()
    p = ProgressPrinter(total_ns=0, stream=out, interval_s=0.0, clock=clock)
    clock.now += 1
    assert p.update(0, 0)
    assert "sim 100.0%" in out.getvalue()
    q = ProgressPrinter(total_ns=10 * S, stream=out, interval_s=0.0, clock=clock)
    line = q.format_line(clock.now, 0, 0)
    assert "ETA ?" in line and "- req/wall-s" in line


def test_format_duration() -> None:
    assert format_duration(0) == "0:00:00"
    assert format_duration(59.6) == "0:01:00"
    assert format_duration(3725) == "1:02:05"
    assert format_duration(-5) == "0:00:00"


def test_unfinished_close_says_where_it_stopped() -> None:
    clock = FakeClock()
    out = io.StringIO()
    p = ProgressPrinter(total_ns=10 * S, stream=out, interval_s=100.0, clock=clock, label="bench")
    clock.now += 2
    p.update(4 * S, 40)
    p.close(finished=False)
    line = out.getvalue().strip()
    assert line.startswith("stopped: bench  40.0%")
    assert "requests 40" in line and "ETA" not in line


def test_label_names_what_progresses() -> None:
    clock = FakeClock()
    p = ProgressPrinter(total_ns=10 * S, stream=io.StringIO(), clock=clock, label="bench")
    clock.now += 1
    line = p.format_line(clock.now, 5 * S, 5)
    assert line.startswith("bench  50.0%") and "sim" not in line
