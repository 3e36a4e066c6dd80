"""A discrete-event heap in integer-nanosecond virtual time.

Entries are ``(time_ns, seq, kind, payload)``; the sequence number breaks ties so that events at
the same instant run in the order they were scheduled, and runs with the same seed are identical.

One event may wait *aside* the heap: the next event of a stream that is itself in time order (a
workload's arrivals). Exactly one of those is pending at any time, so pushing each through the
heap would cost a push and a pop per request for nothing. Events scheduled in time order (a
fixed network delay after "now") may go into a *line* instead, a FIFO. Both are ordered by the
same ``(time_ns, seq)`` as if they had been pushed.
"""

from __future__ import annotations

import heapq
from typing import Any, Final

# Final aliases: a compiled-build accommodation (core/requests.py says why)
_heappush: Final = heapq.heappush
_heappop: Final = heapq.heappop


class EventQueue:
    __slots__ = (
        "_aside_kind",
        "_aside_ns",
        "_aside_payload",
        "_aside_seq",
        "_heap",
        "_line",
        "_line_head",
        "_seq",
        "now_ns",
    )

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, int, Any]] = []
        self._seq = 0
        self.now_ns = 0
        # the event aside (time -1: none)
        self._aside_ns = -1
        self._aside_seq = 0
        self._aside_kind = 0
        self._aside_payload: Any = None
        # the line: entries from ``_line_head`` on are pending, in (time, seq) order
        self._line: list[tuple[int, int, int, Any]] = []
        self._line_head = 0

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

    def push_in_order(self, time_ns: int, kind: int, payload: Any = None) -> None:
        """Schedule an event no earlier than any other scheduled this way and still pending."""
        if time_ns < self.now_ns:
            raise ValueError(f"event at {time_ns} ns is in the past (now {self.now_ns} ns)")
        line = self._line
        if len(line) > self._line_head and line[-1][0] > time_ns:
            raise ValueError(
                f"event at {time_ns} ns is before the last in order ({line[-1][0]} ns)"
            )
        self._seq += 1
        line.append((time_ns, self._seq, kind, payload))

    def pop(self) -> tuple[int, int, Any]:
        # the first of three: the heap's top, the line's head, the event aside
        heap = self._heap
        line = self._line
        head = self._line_head
        src = 0  # 0 heap, 1 line, 2 aside
        best_ns = 0
        best_seq = 0
        if heap:
            top = heap[0]
            best_ns = top[0]
            best_seq = top[1]
        else:
            src = -1
        if head < len(line):
            entry = line[head]
            if src < 0 or entry[0] < best_ns or (entry[0] == best_ns and entry[1] < best_seq):
                src, best_ns, best_seq = 1, entry[0], entry[1]
        a = self._aside_ns
        if a >= 0 and (src < 0 or a < best_ns or (a == best_ns and self._aside_seq < best_seq)):
            payload = self._aside_payload
            self._aside_ns = -1
            self._aside_payload = None
            self.now_ns = a
            return a, self._aside_kind, payload
        if src == 1:
            time_ns, _, kind, payload = line[head]
            head += 1
            if head == len(line):
                line.clear()
                head = 0
            elif head >= 1024 and 2 * head >= len(line):
                del line[:head]
                head = 0
            self._line_head = head
        else:
            time_ns, _, kind, payload = _heappop(heap)
        self.now_ns = time_ns
        return time_ns, kind, payload

    def peek_ns(self) -> int | None:
        t = -1
        if self._heap:
            t = self._heap[0][0]
        line = self._line
        if self._line_head < len(line):
            lt: int = line[self._line_head][0]
            if t < 0 or lt < t:
                t = lt
        a = self._aside_ns
        if a >= 0 and (t < 0 or a < t):
            t = a
        return t if t >= 0 else None

    def __len__(self) -> int:
        return (
            len(self._heap) + len(self._line) - self._line_head + (1 if self._aside_ns >= 0 else 0)
        )
