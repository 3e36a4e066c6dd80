"""A heartbeat on the timed loop: every beat's lateness (``LoopLateness``), busy or idle, handed
to ``observers.on_loop_lateness`` (the ``/metrics`` histogram). How late the scheduler's own
wake-ups run, rounding included, is the pump's figure: ``on_wake_lateness``."""

from __future__ import annotations

import asyncio
import logging

from clockwork.core.units import s_to_ns
from clockwork.service.observers import Observers
from clockwork.transport.loop import LoopLateness

DEFAULT_INTERVAL_S = 0.01

log = logging.getLogger("clockwork.service.controller")


class LoopHeartbeat:
    """Reports each beat's lateness (ns) to ``observers.on_loop_lateness``."""

    def __init__(self, observers: Observers, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self._observers = observers
        self._timer = LoopLateness(self._beat, s_to_ns(interval_s))
        self.beats = 0
        self._broken = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer.start(loop)

    def stop(self) -> None:
        self._timer.stop()

    def _beat(self, late_ns: int) -> None:
        self.beats += 1
        hook = self._observers.on_loop_lateness
        if hook is not None and not self._broken:
            try:
                hook(late_ns)
            except Exception:
                # logged once: a broken hook would otherwise log a hundred times a second
                self._broken = True
                log.exception("loop lateness hook %r raised; no longer called", hook)
