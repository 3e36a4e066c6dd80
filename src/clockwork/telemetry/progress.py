"""A progress line for long simulated runs: sim progress, sim time, requests, requests per wall
second and an ETA, printed at most every ``interval_s`` of wall time.

On a TTY one line is rewritten in place with ``\\r``; otherwise (a log file, a pipe) each update is
a plain line. The wall clock is injected so tests are deterministic.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from clockwork.core.units import NS_PER_S


def format_duration(seconds: float) -> str:
    """Whole seconds as ``H:MM:SS``; a negative duration counts as zero."""
    total = max(0, round(seconds))
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):
        return False


class ProgressPrinter:
    """Prints ``update``s at most every ``interval_s`` wall seconds; a final line on ``close``."""

    def __init__(
        self,
        total_ns: int,
        stream: TextIO | None = None,
        interval_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        label: str = "sim",
    ) -> None:
        # what progresses: "sim" (virtual time) or e.g. "bench" (a real run against a server)
        self.label = label
        self.total_ns = max(0, total_ns)
        self.stream: TextIO = stream if stream is not None else sys.stderr
        self.interval_s = interval_s
        self.clock = clock
        self.tty = _is_tty(self.stream)
        self.start = clock()
        self._last_print = self.start
        self._last_len = 0
        self._sim_ns = 0
        self._done = 0
        self._extra = ""
        self.closed = False
        self.lines_printed = 0

    def format_line(
        self,
        now: float,
        sim_now_ns: int,
        requests_done: int,
        extra: str = "",
        final: bool = False,
        eta: bool = True,
    ) -> str:
        """The status line for this state at wall time ``now``; a ``final`` one (the run has
        finished) is at 100% and has no ETA, nor has one without ``eta``."""
        elapsed = max(0.0, now - self.start)
        frac = min(1.0, sim_now_ns / self.total_ns) if self.total_ns > 0 else 1.0
        if final:
            frac = 1.0
        rate = f"{requests_done / elapsed:,.0f}" if elapsed > 0 else "-"
        if 0 < frac < 1 and elapsed > 0:
            left = format_duration(elapsed * (1 - frac) / frac)
        elif frac >= 1:
            left = format_duration(0)
        else:
            left = "?"
        line = (
            f"{self.label} {100 * frac:5.1f}%  t={sim_now_ns / NS_PER_S:,.1f}s/"
            f"{self.total_ns / NS_PER_S:,.1f}s  requests {requests_done:,}  "
            f"{rate} req/wall-s  wall {format_duration(elapsed)}"
        )
        if eta and not final:
            line += f"  ETA {left}"
        return f"{line}  {extra}" if extra else line

    def _emit(self, line: str, final: bool) -> None:
        if self.tty:
            pad = " " * max(0, self._last_len - len(line))
            self.stream.write("\r" + line + pad + ("\n" if final else ""))
            self._last_len = 0 if final else len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.lines_printed += 1

    def update(self, sim_now_ns: int, requests_done: int, extra: str = "") -> bool:
        """Record progress; print a line if ``interval_s`` has passed since the last one (or since
        the start). Returns whether it printed."""
        if self.closed:
            return False
        self._sim_ns, self._done, self._extra = sim_now_ns, requests_done, extra
        now = self.clock()
        if now - self._last_print < self.interval_s:
            return False
        self._last_print = now
        self._emit(self.format_line(now, sim_now_ns, requests_done, extra), final=False)
        return True

    def close(
        self,
        sim_now_ns: int | None = None,
        requests_done: int | None = None,
        extra: str = "",
        finished: bool = True,
    ) -> None:
        """Print the final line (with the last known figures unless given) and end the line.
        A ``finished`` run is at 100% with nothing left (it may end before ``total_ns`` when
        its work is done early) and the line has no ETA; an unfinished one says where it
        stopped. Closing twice prints once."""
        if self.closed:
            return
        self.closed = True
        sim = self._sim_ns if sim_now_ns is None else sim_now_ns
        done = self._done if requests_done is None else requests_done
        now = self.clock()
        if finished:
            line = "done: " + self.format_line(now, sim, done, extra or self._extra, final=True)
        else:
            line = "stopped: " + self.format_line(now, sim, done, extra or self._extra, eta=False)
        self._emit(line, final=True)
