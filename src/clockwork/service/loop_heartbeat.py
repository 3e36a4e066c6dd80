"""A heartbeat on the timed loop: a timer due every ``interval_s`` that reports how late it ran.

Anything that holds the loop (a client's request decoded on it, a long frame, a slow hook)
delays every callback due meanwhile; the heartbeat's lateness measures that, for the loop as a
whole, busy or idle. It is counted from when the loop's own timer wheel deems the beat due (for
uvloop, whose timers count whole milliseconds, the millisecond after the rounding), so that the
timers' granularity is not mistaken for a held loop. (How late the scheduler's own wake-ups run,
rounding included, is the pump's figure: ``on_wake_lateness``.)
"""

from __future__ import annotations

import asyncio
import logging
import time

from clockwork.core.units import s_to_ns
from clockwork.service.observers import Observers
from clockwork.service.scheduling_pump import timer_delay_s

DEFAULT_INTERVAL_S = 0.01

log = logging.getLogger("clockwork.service.controller")


class LoopHeartbeat:
    """Reports each beat's lateness (ns) to ``observers.on_loop_lateness``."""

    def __init__(self, observers: Observers, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self._observers = observers
        self._interval_ns = s_to_ns(interval_s)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due_ns = 0
        self.beats = 0
        self._broken = False

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
        late_ns = max(0, time.monotonic_ns() - self._due_ns)
        self.beats += 1
        hook = self._observers.on_loop_lateness
        if hook is not None and not self._broken:
            try:
                hook(late_ns)
            except Exception:
                # logged once: a broken hook would otherwise log a hundred times a second
                self._broken = True
                log.exception("loop lateness hook %r raised; no longer called", hook)
        self._arm()
