"""How long the controller-worker links take, learned from the actions' own timestamps.

Every result says when its worker received the action (``received_ns``) and when it ended
(``ended_ns``), in the controller's clock. ``received - sent`` is the delay before an action can
start on its device (the lead); ``arrived - ended`` is the delay before a result counts (the
margin a deadline must leave). The policy plans with a high percentile of the last ``window`` of
each, instead of a fixed guess: on the simulator's 100 us links a fixed 0.5 ms margin refused
every request of an SLO within 0.5 ms of the run time (BENCHMARKS.md s.21).
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from typing import Final

from clockwork.core.ids import DeviceId

# Final aliases: a compiled-build accommodation (core/requests.py says why)
_bisect_left: Final = bisect_left
_insort: Final = insort


class DelayWindow:
    """The nearest-rank ``percentile`` of the last ``window`` delays; ``seed_ns`` until one is
    measured. Negative delays (clocks a little apart) count as 0."""

    __slots__ = ("_index", "_next", "_rank", "_ring", "_sorted", "_window", "value_ns")

    def __init__(self, seed_ns: int, window: int, percentile: float) -> None:
        if window < 1 or not 0.0 < percentile <= 100.0 or seed_ns < 0:
            raise ValueError("delay window >= 1, percentile in (0, 100] and seed >= 0 required")
        self._window = window
        self._rank = percentile / 100.0
        self._index = max(0, math.ceil(self._rank * window) - 1)
        self._ring: list[int] = []
        self._sorted: list[int] = []
        self._next = 0
        self.value_ns = seed_ns

    def observe(self, delay_ns: int) -> None:
        d = delay_ns if delay_ns > 0 else 0
        ring = self._ring
        ordered = self._sorted
        if len(ring) < self._window:
            ring.append(d)
            _insort(ordered, d)
            n = len(ring)
            self.value_ns = ordered[max(0, math.ceil(self._rank * n) - 1)]
            return
        i = self._next
        old = ring[i]
        if old != d:
            del ordered[_bisect_left(ordered, old)]
            _insort(ordered, d)
            ring[i] = d
            self.value_ns = ordered[self._index]
        self._next = i + 1 if i + 1 < self._window else 0


class LinkDelays:
    """The lead (action sent -> received) and the margin (result ended -> arrived) to plan with."""

    __slots__ = ("lead", "margin")

    def __init__(self, lead_seed_ns: int, margin_seed_ns: int, window: int) -> None:
        self.lead = DelayWindow(lead_seed_ns, window, 99.0)
        self.margin = DelayWindow(margin_seed_ns, window, 99.0)

    @property
    def measured(self) -> bool:
        """Whether any result has been measured (before that both are their seeds)."""
        return bool(self.margin._ring)

    def observe(self, sent_ns: int, received_ns: int, ended_ns: int, now_ns: int) -> None:
        self.lead.observe(received_ns - sent_ns)
        self.margin.observe(now_ns - ended_ns)


class StartGaps:
    """How long a worker takes to start an Infer queued behind another once that one ended (its
    turnaround: the last result sent, the next inputs put in place), learned per result: the
    median and the p99 of the last ``window``. The plan runs Infers back to back; the backlog
    rule counts a gap before each batch behind another, and the tail once, so that a request
    it takes is not one the worker must then refuse as too late by a fraction of a millisecond."""

    __slots__ = ("_last_end", "tail", "typical")

    def __init__(self, window: int) -> None:
        self.typical = DelayWindow(0, window, 50.0)
        self.tail = DelayWindow(0, window, 99.0)
        # per device: when its last Infer ended (or was refused), on the controller's clock
        self._last_end: dict[DeviceId, int] = {}

    def observe(self, device: DeviceId, received_ns: int, began_ns: int, ended_ns: int) -> None:
        last = self._last_end.get(device)
        if last is not None and received_ns <= last:  # it waited for that one to end
            gap = began_ns - last
            self.typical.observe(gap)
            self.tail.observe(gap)
        self._last_end[device] = ended_ns

    def forget(self, device: DeviceId) -> None:
        self._last_end.pop(device, None)
