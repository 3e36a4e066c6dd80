"""A discrete-event heap in integer-nanosecond virtual time.

Entries are ``(time_ns, seq, kind, payload)``; the sequence number breaks ties so that events at
the same instant run in the order they were scheduled, and runs with the same seed are identical.

One event may wait *aside* the heap: the next event of a stream that is itself in time order (a
workload's arrivals). Exactly one of those is pending at any time, so pushing each through the
heap would cost a push and a pop per request for nothing; it is ordered by the same
``(time_ns, seq)`` as if it had been pushed.
"""

from __future__ import annotations

import heapq
from typing import Any, Final

# module-level Final aliases: compiled code calls them from a C static, not through a
# module attribute lookup per call
_heappush: Final = heapq.heappush
_heappop: Final = heapq.heappop


class EventQueue:
    __slots__ = ("_aside_kind", "_aside_ns", "_aside_payload", "_aside_seq", "_heap", "_seq",
                 "now_ns")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, int, Any]] = []
        self._seq = 0
        self.now_ns = 0
        # the event aside (time -1: none)
        self._aside_ns = -1
        self._aside_seq = 0
        self._aside_kind = 0
        self._aside_payload: Any = None

    def push(self, time_ns: int, kind: int, payload: Any = None) -> None:
        if time_ns < self.now_ns:
            raise ValueError(f"event at {time_ns} ns is in the past (now {self.now_ns} ns)")
        self._seq += 1
        _heappush(self._heap, (time_ns, self._seq, kind, payload))

    def put_aside(self, time_ns: int, kind: int, payload: Any = None) -> None:
        """Schedule the next event of a time-ordered stream; only one may be aside at once."""
        if time_ns < self.now_ns:
            raise ValueError(f"event at {time_ns} ns is in the past (now {self.now_ns} ns)")
        if self._aside_ns >= 0:
            raise ValueError("an event is already aside: pop it before putting another")
        self._seq += 1
        self._aside_ns = time_ns
        self._aside_seq = self._seq
        self._aside_kind = kind
        self._aside_payload = payload

    def _aside_first(self) -> bool:
        a = self._aside_ns
        if a < 0:
            return False
        heap = self._heap
        if not heap:
            return True
        top = heap[0]
        return a < top[0] or (a == top[0] and self._aside_seq < top[1])

    def pop(self) -> tuple[int, int, Any]:
        if self._aside_first():
            time_ns = self._aside_ns
            payload = self._aside_payload
            self._aside_ns = -1
            self._aside_payload = None
            self.now_ns = time_ns
            return time_ns, self._aside_kind, payload
        time_ns, _, kind, payload = _heappop(self._heap)
        self.now_ns = time_ns
        return time_ns, kind, payload

    def peek_ns(self) -> int | None:
        heap = self._heap
        a = self._aside_ns
        if not heap:
            return a if a >= 0 else None
        t: int = heap[0][0]
        return a if 0 <= a < t else t

    def __len__(self) -> int:
        return len(self._heap) + (1 if self._aside_ns >= 0 else 0)
