"""Execution-time estimates from recent measurements (DESIGN.md s.5).

Per (model, batch size, device kind) and per (model, device kind) for loads: a percentile of the
last ``window`` measurements, seeded from the profile. The estimate is recomputed only when a
measurement arrives, so reading it is a single attribute access on the hot path.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class EstimatorConfig:
    window: int = 10
    percentile: float = 99.0

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"estimator window must be >= 1, got {self.window}")
        if not 0.0 < self.percentile <= 100.0:
            raise ValueError(f"estimator percentile must be in (0, 100], got {self.percentile}")


# module-level Final aliases: compiled code calls them from a C static, not through the module's
# dict per call
_bisect_left: Final = bisect_left
_insort: Final = insort


class LatencyEstimator:
    """One series of durations; ``estimate_ns`` is the configured percentile of the window."""

    __slots__ = ("_full_index", "_next", "_rank", "_ring", "_sorted", "_window", "estimate_ns")

    def __init__(self, seed_ns: int, config: EstimatorConfig) -> None:
        if seed_ns <= 0:
            raise ValueError(f"seed estimate must be > 0 ns, got {seed_ns}")
        self._window = config.window
        # the window as a ring (``_next``: the oldest once full), made at the first measurement:
        # a cluster registers thousands of models times batch sizes, most never measured in a run
        self._ring: list[int] = []
        self._next = 0
        # the same samples in order, kept sorted as they come and go
        self._sorted: list[int] = []
        # nearest-rank percentile: the smallest value with at least p% of samples at or below it
        self._rank = config.percentile / 100.0
        self._full_index = self._index(config.window)
        self.estimate_ns = seed_ns

    def _index(self, n: int) -> int:
        return max(0, math.ceil(self._rank * n) - 1)

    def observe(self, duration_ns: int) -> None:
        if duration_ns <= 0:
            return  # a clock glitch must not drive the estimate to zero
        ordered = self._sorted
        ring = self._ring
        if not ring:  # the first measurement joins the profile's seed
            ring.append(self.estimate_ns)
            ordered.append(self.estimate_ns)
        if len(ring) == self._window:
            i = self._next
            del ordered[_bisect_left(ordered, ring[i])]
            ring[i] = duration_ns
            self._next = i + 1 if i + 1 < self._window else 0
            _insort(ordered, duration_ns)
            # a full window (the usual case) has a fixed rank
            self.estimate_ns = ordered[self._full_index]
            return
        ring.append(duration_ns)
        _insort(ordered, duration_ns)
        self.estimate_ns = ordered[self._index(len(ordered))]

    @property
    def samples(self) -> tuple[int, ...]:
        """The window, oldest first."""
        ring = self._ring
        if not ring:
            return (self.estimate_ns,)
        i = self._next
        return tuple(ring[i:] + ring[:i])


class ModelEstimates:
    """All estimates of one model on one device kind: one per batch size, and one for loads."""

    __slots__ = ("batch_sizes", "exec", "load")

    def __init__(
        self, exec_seed_ns: dict[int, int], load_seed_ns: int, config: EstimatorConfig
    ) -> None:
        self.batch_sizes = tuple(sorted(exec_seed_ns))
        self.exec = {b: LatencyEstimator(t, config) for b, t in exec_seed_ns.items()}
        self.load = LatencyEstimator(load_seed_ns, config)

    def exec_ns(self, batch_size: int) -> int:
        return self.exec[batch_size].estimate_ns
