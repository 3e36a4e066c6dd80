"""What answering a call costs the front door, so that deadlines hold where the client sees them.

A client's timeout runs from when it sent the call to when it reads the answer. Between those, the
front door reads and decodes the body before the controller sees the request, and encodes the
answer after the controller is done: with JSON tensors on a busy CPU that is milliseconds, and an
answer the controller finished just in time reached the client late. So each call tells the
controller how much of its timeout the front door has spent already and will spend on the answer
(``InferenceCall.overhead_ns``), and the controller plans against what is left.
"""

from __future__ import annotations

from collections import deque


class ReplyCost:
    """A high percentile of recent answer-encoding times (ns), recomputed every few answers."""

    __slots__ = ("_every", "_percentile", "_recent", "_since", "margin_ns")

    def __init__(self, window: int = 64, percentile: float = 90.0, every: int = 8) -> None:
        if window < 1 or every < 1 or not 0 < percentile <= 100:
            raise ValueError("window and every must be >= 1, percentile in (0, 100]")
        self._recent: deque[int] = deque(maxlen=window)
        self._percentile = percentile
        self._every = every
        self._since = 0
        self.margin_ns = 0

    def observe(self, duration_ns: int) -> None:
        self._recent.append(max(0, duration_ns))
        self._since += 1
        if self._since >= self._every or len(self._recent) < self._every:
            self._since = 0
            ordered = sorted(self._recent)
            rank = max(0, -(-len(ordered) * self._percentile // 100) - 1)
            self.margin_ns = ordered[int(rank)]
