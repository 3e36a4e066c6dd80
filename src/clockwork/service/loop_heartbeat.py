"""A heartbeat on the timed loop: a timer due every ``interval_s`` that reports how late it ran.

The scheduling pump reports the lateness of its own wake-ups, but only while it has work
planned; the heartbeat keeps the figure honest when it has none (a client's request decoded on
the loop, a long frame, a slow hook: anything that holds the loop shows up here). With uvloop,
whose timers count whole milliseconds, up to 1 ms of each sample is the timer's rounding.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from clockwork.core.units import NS_PER_S
from clockwork.service.observers import Observers
from clockwork.service.scheduling_pump import timer_delay_s

DEFAULT_INTERVAL_S = 0.01

log = logging.getLogger("clockwork.service.controller")


class LoopHeartbeat:
    """Reports each beat's lateness (ns) to ``observers.on_loop_lateness``."""

    def __init__(
        self,
        observers: Observers,
        clock_ns: Callable[[], int],
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self._observers = observers
        self._clock = clock_ns
        self._interval_ns = round(interval_s * NS_PER_S)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due_ns = 0
        self.beats = 0
        self._broken = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._arm(self._clock())

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._loop = None

    def _arm(self, now_ns: int) -> None:
        loop = self._loop
        if loop is None:
            return
        self._due_ns = now_ns + self._interval_ns
        self._timer = loop.call_later(timer_delay_s(loop, self._interval_ns), self._beat)

    def _beat(self) -> None:
        now = self._clock()
        late_ns = now - self._due_ns
        if late_ns < 0:  # the loop's timer fired early: wait for the rest
            loop = self._loop
            if loop is not None:
                self._timer = loop.call_later(timer_delay_s(loop, -late_ns), self._beat)
            return
        self.beats += 1
        hook = self._observers.on_loop_lateness
        if hook is not None and not self._broken:
            try:
                hook(late_ns)
            except Exception:
                # logged once: a broken hook would otherwise log a hundred times a second
                self._broken = True
                log.exception("loop lateness hook %r raised; no longer called", hook)
        self._arm(now)
