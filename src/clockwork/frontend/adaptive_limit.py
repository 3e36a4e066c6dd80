"""How many inference requests the door lets in at once: a limit that finds what the server can
answer in time (additive increase, multiplicative decrease, as TCP's congestion window).

Every admitted request costs the front door its decode before the scheduler can judge it. Let in
more than the server can answer in time and the surplus is decoded and then refused, or queued
until late, and that work is taken from the requests that could still be served: on a 2-core
host at twice its capacity, a server that admitted everything answered almost nothing in time.
A refusal at the door, before the body is decoded, costs little. So the door keeps a limit on
requests in flight and moves it by what the admitted requests met:

- a miss is an answer past its deadline, as the door measures it (from the request's first byte
  to its answer), or a request the scheduler refused as OVERLOADED after it was decoded. Misses
  also come without overload (a run that took long, a client's impossible deadline), so one
  miss says little: the limit is cut, by ``backoff``, when a miss comes while the share of
  misses among the last ``window`` or so answers (a moving average) is above ``tolerance``;
  and once per round trip at most (a miss of a request admitted before the last cut does not
  cut again, as in TCP, where the losses of one window count once);
- an answer in time while the limit binds grows it: by one until the first cut (slow start),
  then by one over the limit (a limit's worth of such answers add one: one a round trip, as TCP's
  congestion avoidance adds a segment). The limit binds from when it holds a request back until
  a request is let in with fewer than half the limit in flight (the limit is then not what holds
  the load, and answers in time say nothing of it: TCP's congestion window validation). Grown
  only once per request held back, as this limit first was, it stayed near 20 at 400 requests/s
  on a 2-core host and refused one request in five there, where this rule settles near 34 and
  refuses almost none (BENCHMARKS.md s.32).

The limit stays within ``[floor, ceiling]``. Sans-IO: times are arguments.
"""

from __future__ import annotations

__all__ = ["AdaptiveLimit"]


class AdaptiveLimit:
    """An AIMD limit on requests in flight (see the module docstring)."""

    __slots__ = (
        "_binds",
        "_cut_at_ns",
        "_slow_start",
        "_smoothing",
        "backoff",
        "ceiling",
        "cuts",
        "floor",
        "limit",
        "miss_share",
        "tolerance",
    )

    def __init__(
        self,
        initial: int,
        floor: int,
        ceiling: int,
        *,
        backoff: float = 0.9,
        tolerance: float = 0.03,
        window: int = 100,
    ) -> None:
        if not 1 <= floor <= initial <= ceiling:
            raise ValueError(
                f"need 1 <= floor <= initial <= ceiling, got {floor}, {initial}, {ceiling}"
            )
        if not 0.0 < backoff < 1.0 or not 0.0 <= tolerance < 1.0 or window < 1:
            raise ValueError(
                f"need backoff in (0, 1), tolerance in [0, 1) and window >= 1, got {backoff}, "
                f"{tolerance} and {window}"
            )
        self.floor = floor
        self.ceiling = ceiling
        self.backoff = backoff
        self.tolerance = tolerance
        self._smoothing = 1.0 / window
        self.limit = float(initial)
        self.miss_share = 0.0  # moving average of misses among the answers
        self.cuts = 0
        self._slow_start = True
        self._cut_at_ns: int | None = None  # when the limit was last cut
        self._binds = False  # whether the limit binds (see the module docstring)

    def admits(self, inflight: int) -> bool:
        """Whether one more request fits beside ``inflight``; one that does not makes the limit
        binding (worth raising while answers come in time), one let in with fewer than half the
        limit in flight makes it not."""
        if inflight < int(self.limit):
            if 2 * inflight < self.limit:
                self._binds = False
            return True
        self._binds = True
        return False

    def answered(self, admitted_ns: int, now_ns: int, *, met: bool) -> None:
        """A request admitted at ``admitted_ns`` ended at ``now_ns``: ``met`` its deadline (an
        answer in time), or not (late, or refused as overloaded after it was admitted)."""
        self.miss_share += ((0.0 if met else 1.0) - self.miss_share) * self._smoothing
        if not met:
            if self.miss_share <= self.tolerance:
                return  # a miss now and then: noise, not load
            if self._cut_at_ns is not None and admitted_ns < self._cut_at_ns:
                return  # admitted under the old limit: that limit was cut already
            self.limit = max(float(self.floor), self.limit * self.backoff)
            self._cut_at_ns = now_ns
            self._slow_start = False
            self.cuts += 1
            return
        if not self._binds:
            return  # the limit does not bind: an answer in time says nothing of it
        self.limit = min(
            float(self.ceiling), self.limit + (1.0 if self._slow_start else 1.0 / self.limit)
        )
