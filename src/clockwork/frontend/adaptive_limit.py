"""The door's cap on inference requests in flight, adapted to what the server can answer in time.

The fixed cap (``--max-inflight``) bounds memory, but where the front door itself is the
bottleneck (JSON decoding, small models on a fast device) a server under overload admits every
request up to it: each costs its decoding and a place in the loop, then waits until the scheduler
can only refuse it or answer it late, and goodput collapses far below capacity. A request refused
at the door, before its body is read, costs almost nothing.

``AdaptiveLimit`` is additive increase, multiplicative decrease on the scheduler's answers (it is
a controller observer: ``on_response``). An answer in time raises the cap by ``1 / cap`` (by one
for each cap's worth of answers); a request admitted and then not served for want of time
(refused ``OVERLOADED``, or answered ``LATE``) lowers it by the factor ``decrease``, at most once
per ``cooldown_s`` (a burst of misses is one signal, as a congestion window treats one window's
losses). The cap stays within [``floor``, ``ceiling``]: the floor keeps a server whose device is
its bottleneck, whose scheduler refuses by deadline so that requests leave quickly, from being
throttled at the door by refusals that are the scheduler's ordinary work. A refusal as
``DEADLINE_INFEASIBLE`` is no signal: no device could have met that deadline, loaded or not.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from clockwork.core.requests import Response, ResponseStatus

#: the factor a miss lowers the cap by
DEFAULT_DECREASE = 0.9
#: misses closer together than this lower the cap once
DEFAULT_COOLDOWN_S = 0.1

_MISSES = frozenset({ResponseStatus.OVERLOADED, ResponseStatus.LATE})


class AdaptiveLimit:
    """See the module docstring. ``clock_s``: a monotonic clock in seconds."""

    __slots__ = (
        "_clock_s",
        "_last_decrease_s",
        "ceiling",
        "cooldown_s",
        "decrease",
        "floor",
        "value",
    )

    def __init__(
        self,
        floor: int,
        ceiling: int,
        *,
        decrease: float = DEFAULT_DECREASE,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        clock_s: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < floor <= ceiling:
            raise ValueError(f"0 < floor <= ceiling required, got {floor} and {ceiling}")
        if not 0 < decrease < 1 or cooldown_s < 0:
            raise ValueError("0 < decrease < 1 and cooldown_s >= 0 required")
        self.floor = floor
        self.ceiling = ceiling
        self.decrease = decrease
        self.cooldown_s = cooldown_s
        self._clock_s = clock_s
        #: the cap now (a float: increases are fractions of a request)
        self.value = float(ceiling)
        self._last_decrease_s = -float("inf")

    @property
    def cap(self) -> int:
        return int(self.value)

    def on_response(self, response: Response) -> None:
        status = response.status
        if status is ResponseStatus.SUCCESS:
            self.value = min(float(self.ceiling), self.value + 1.0 / self.value)
        elif status in _MISSES:
            now = self._clock_s()
            if now - self._last_decrease_s >= self.cooldown_s:
                self._last_decrease_s = now
                self.value = max(float(self.floor), self.value * self.decrease)
