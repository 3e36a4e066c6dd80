"""The door's test for a standing queue in front of the loop (CoDel's, applied to requests).

When more requests arrive than the loop can decode, each waits behind the others between its
first byte and the door's middleware, and the wait grows until every request is late; each one
still costs its full decode, so nothing at all is answered in time (receive livelock). The wait
is the signal: a burst makes a few requests wait, a standing queue makes every request wait.
As in CoDel (Nichols and Jacobson, 2012) and in the server queues of "Fail at Scale" (Maurer,
2015), the gate acts only once every request for ``interval_ns`` waited at least ``target_ns``;
it then refuses each request that waited that long, before its body is decoded, so a refusal
costs the loop little and the queue drains. The first request that waited less ends it.

Sans-IO: times are arguments (``perf_counter_ns`` in the door).
"""

from __future__ import annotations

__all__ = ["QueueDelayGate"]


class QueueDelayGate:
    """Admits a request unless the door has had a standing queue for ``interval_ns``.

    ``target_ns`` 0 turns the gate off (every request admitted)."""

    __slots__ = ("_above_since_ns", "interval_ns", "target_ns")

    def __init__(self, target_ns: int, interval_ns: int) -> None:
        if target_ns < 0 or interval_ns <= 0:
            raise ValueError(
                f"target_ns must be >= 0 and interval_ns > 0, got {target_ns} and {interval_ns}"
            )
        self.target_ns = target_ns
        self.interval_ns = interval_ns
        # when the requests' waits went above the target without a break; None: they are not
        self._above_since_ns: int | None = None

    def admit(self, waited_ns: int, now_ns: int) -> bool:
        """Whether a request that waited ``waited_ns`` before the door saw it at ``now_ns``
        is admitted."""
        if self.target_ns == 0 or waited_ns < self.target_ns:
            self._above_since_ns = None
            return True
        if self._above_since_ns is None:
            self._above_since_ns = now_ns
        return now_ns - self._above_since_ns < self.interval_ns

    @property
    def standing(self) -> bool:
        """Whether the last request seen waited past the target (a queue may be forming)."""
        return self._above_since_ns is not None
