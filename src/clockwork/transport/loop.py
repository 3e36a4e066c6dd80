"""Event loop choice (uvloop when asked for, never implicitly: importing this does nothing), and
timers on a loop: due no earlier than asked (``timer_delay_s``), and one that measures how late
the loop runs (``LoopLateness``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from clockwork.core.units import NS_PER_MS, NS_PER_S, s_to_ns


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def install_uvloop() -> bool:
    """Make uvloop the event loop policy of this process, if it is installed; True if it is."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def loop_factory(use_uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop]:
    """A loop factory for ``asyncio.Runner``/``asyncio.run(loop_factory=...)``: uvloop's if asked
    for (``ImportError`` if it is not installed), else asyncio's default."""
    if use_uvloop:
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


_ms_timer_loops: dict[type, bool] = {}


def timer_delay_s(loop: asyncio.AbstractEventLoop, delay_ns: int) -> float:
    """What to give ``call_later`` for a timer due in ``delay_ns`` that must not fire before
    (a timer that fires early costs a wake-up and a poll for nothing)."""
    kind = type(loop)
    ms_timers = _ms_timer_loops.get(kind)
    if ms_timers is None:
        ms_timers = _ms_timer_loops[kind] = kind.__module__.startswith("uvloop")
    if not ms_timers:
        return max(0, delay_ns) / NS_PER_S
    # uvloop's timers fire when its cached clock (``loop.time()``, in whole ms, up to 1 ms
    # behind) reaches that clock plus the delay rounded to whole ms: up to 1.5 ms early.
    # Counted from that clock and rounded up, the delay ends at or after the due time (at
    # most 1 ms after).
    lag_ns = max(0, time.monotonic_ns() - s_to_ns(loop.time()))
    return -(-(lag_ns + max(0, delay_ns)) // NS_PER_MS) / 1000


class LoopLateness:
    """A timer due every ``interval_ns`` on a loop, handing ``report`` how late each beat ran
    (ns). Anything that holds the loop (a request decoded on it, a long frame, a slow hook)
    delays every callback due meanwhile; a beat's lateness measures that for the loop as a whole.
    It is counted from when the loop's own timer deems the beat due (for uvloop, whose timers
    count whole milliseconds, the millisecond after the rounding), so that the timers'
    granularity is not mistaken for a held loop. ``report`` may call ``stop``."""

    __slots__ = ("_due_ns", "_interval_ns", "_loop", "_report", "_timer")

    def __init__(self, report: Callable[[int], None], interval_ns: int) -> None:
        if interval_ns <= 0:
            raise ValueError(f"interval_ns must be > 0, got {interval_ns}")
        self._report = report
        self._interval_ns = interval_ns
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due_ns = 0

    @property
    def running(self) -> bool:
        return self._loop is not None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._arm()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._loop = None

    def _arm(self) -> None:
        loop = self._loop
        if loop is None:
            return
        delay_s = timer_delay_s(loop, self._interval_ns)
        # the loop's clock is the monotonic clock, in seconds (uvloop's in whole ms)
        self._due_ns = s_to_ns(loop.time() + delay_s)
        self._timer = loop.call_later(delay_s, self._beat)

    def _beat(self) -> None:
        self._timer = None
        self._report(max(0, time.monotonic_ns() - self._due_ns))
        self._arm()
