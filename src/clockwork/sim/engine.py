"""A discrete-event heap in integer-nanosecond virtual time.

Entries are ``(time_ns, seq, kind, payload)``; the sequence number breaks ties so that events at
the same instant run in the order they were scheduled, and runs with the same seed are identical.
"""

from __future__ import annotations

import heapq
from typing import Any


class EventQueue:
    __slots__ = ("_heap", "_seq", "now_ns")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, int, Any]] = []
        self._seq = 0
        self.now_ns = 0

    def push(self, time_ns: int, kind: int, payload: Any = None) -> None:
        if time_ns < self.now_ns:
            raise ValueError(f"event at {time_ns} ns is in the past (now {self.now_ns} ns)")
        self._seq += 1
        heapq.heappush(self._heap, (time_ns, self._seq, kind, payload))

    def pop(self) -> tuple[int, int, Any]:
        time_ns, _, kind, payload = heapq.heappop(self._heap)
        self.now_ns = time_ns
        return time_ns, kind, payload

    def peek_ns(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)
