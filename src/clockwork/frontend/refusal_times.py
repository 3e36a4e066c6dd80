"""How long a refusal took: from an HTTP request's first byte to its 503 or 429, given at the
door (before the body is read) or past it (the scheduler's OVERLOADED after the body was read and
decoded).

A refusal is only as good as it is quick: a client told "no" at once retries elsewhere, one told
after its deadline has lost the time anyway. The client's own figure for it includes its send
and its loop (a flood's client is as loaded as the server), so the door measures its part too.
Plain counts in fixed buckets, rendered as a histogram at scrape time: nothing but a bisect and
two additions on the refusal's path.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING, Final

from clockwork.core.units import NS_PER_S, s_to_ns

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

__all__ = ["BUCKETS_S", "RefusalTimes"]

#: upper bounds of the buckets, in seconds (the last one, +Inf, is implied)
BUCKETS_S: Final = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
_BOUNDS_NS: Final = tuple(s_to_ns(b) for b in BUCKETS_S)


class RefusalTimes:
    """A histogram of refusal times; ``counts[i]`` holds those at most ``BUCKETS_S[i]`` and above
    the bucket before (the last entry: above every bound)."""

    __slots__ = ("counts", "sum_ns")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS_S) + 1)
        self.sum_ns = 0

    def observe(self, took_ns: int) -> None:
        took_ns = max(0, took_ns)
        self.counts[bisect_left(_BOUNDS_NS, took_ns)] += 1
        self.sum_ns += took_ns

    def metric(self) -> Metric:
        from prometheus_client.core import HistogramMetricFamily

        cumulative: list[tuple[str, float]] = []
        total = 0
        for bound, n in zip((*(str(b) for b in BUCKETS_S), "+Inf"), self.counts, strict=True):
            total += n
            cumulative.append((bound, float(total)))
        return HistogramMetricFamily(
            "clockwork_door_refusal_seconds",
            "Time from an HTTP request's first byte to its refusal (503 or 429), at the door "
            "or by the scheduler",
            buckets=cumulative,
            sum_value=self.sum_ns / NS_PER_S,
        )
