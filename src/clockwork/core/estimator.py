"""Execution-time estimates from recent measurements (DESIGN.md s.5).

Per (model, batch size, device kind) and per (model, device kind) for loads, or per device
instead of per kind (``EstimatorConfig.per_device_estimates``): a percentile of the last
``window`` measurements, seeded from the profile. The estimate is recomputed only when a
measurement arrives, so reading it is a single attribute access on the hot path.

Beyond the paper (DESIGN.md s.5, "measured on real, noisy executors"), an estimate must not lock a
model out on the word of one bad run:

- **Outliers wait for a second witness.** A measurement above ``outlier_factor`` times the
  window's median (a worker paused by SIGSTOP or a GC, a noisy neighbour's burst) is held aside;
  it joins the window only if another such measurement arrives within the next ``window``
  measurements and ran after the first had ended (the executor really became slower), and is
  dropped otherwise; outliers that overlapped in time (a paused worker delays the runs of all
  its devices at once) are one witness. A steady device (the V100 profile: stragglers of 2x)
  never triggers it.
- **Samples age out in time.** ``refresh(now_ns)`` drops measurements older than ``max_age_ns``;
  with none left the estimate returns to the profile's seed. The policy calls it where an
  estimate makes a model refuse work, so a stale high estimate heals even when nothing runs.
- **The spread is kept.** ``spread()`` describes the window (median, log-normal fit) and
  ``probability_within(budget_ns)`` says how likely one run fits a budget.
- **Admission by probability** (``EstimatorConfig.level``). The paper's estimate, the p99 of the
  last 10 runs, is their maximum: on a steady GPU that is the duration itself, but on a noisy
  executor (this project's CPUs: p99/p50 of 1.1-3) it is whatever the worst recent run was, and it
  jumps with each one. With a level, the estimate is instead the duration that one run stays
  within with that probability under a log-normal fit of the window; every planning decision
  of the form ``start + estimate + margin <= deadline`` (admission, batch choice, dropping a head,
  the worker's ``latest``) then admits exactly what meets its deadline with at least that
  probability, from the spread of recent runs. With no spread (a steady profile, or a window
  of identical runs) the two rules give the same number.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from dataclasses import dataclass
from statistics import NormalDist
from typing import Final

from clockwork.core.units import NS_PER_S


@dataclass(frozen=True, slots=True)
class EstimatorConfig:
    window: int = 10
    percentile: float = 99.0
    # a measurement above this many times the window's median waits for a second one before it
    # counts (0: every measurement counts at once, as in the paper)
    outlier_factor: float = 4.0
    # measurements older than this are forgotten when the policy refreshes an estimate
    max_age_ns: int = 10 * NS_PER_S
    # 0: the estimate is the nearest-rank ``percentile`` of the window (the paper's rule); in
    # (0, 1): the duration one run stays within with this probability, from a log-normal fit of
    # the window (admission by probability: see the module docstring)
    level: float = 0.0
    # False: one set of estimates per (model, device kind), shared by the devices of that kind
    # (the paper's rule, kept by the simulator, whose devices of a kind are alike). True: one
    # set per (model, device), each seeded from its kind's profile, so a device on a noisy or
    # slower host neither drags up the estimates of the others of its kind nor hides behind
    # them (what a serving process runs). Here, not in a policy's config: it is how estimates
    # are kept, which every policy shares through ``PolicyBase``
    per_device_estimates: bool = False

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"estimator window must be >= 1, got {self.window}")
        if not 0.0 < self.percentile <= 100.0:
            raise ValueError(f"estimator percentile must be in (0, 100], got {self.percentile}")
        if self.outlier_factor != 0 and self.outlier_factor <= 1.0:
            raise ValueError(
                f"estimator outlier_factor must be 0 (off) or > 1, got {self.outlier_factor}"
            )
        if self.max_age_ns <= 0:
            raise ValueError(f"estimator max_age_ns must be > 0, got {self.max_age_ns}")
        if not 0.0 <= self.level < 1.0:
            raise ValueError(f"estimator level must be 0 (off) or in (0, 1), got {self.level}")


@dataclass(frozen=True, slots=True)
class Spread:
    """What the window says about one series: its size, median and a log-normal fit
    (``log_mean``/``log_sd`` of the natural log of the durations in ns)."""

    samples: int
    median_ns: int
    log_mean: float
    log_sd: float

    def quantile_ns(self, probability: float) -> int:
        """The duration that a run stays within with ``probability`` under the fit."""
        z = NormalDist().inv_cdf(probability)
        return int(math.exp(self.log_mean + z * self.log_sd))

    def probability_within(self, budget_ns: int) -> float:
        if budget_ns <= 0:
            return 0.0
        if self.log_sd <= 0.0:
            return 1.0 if math.log(budget_ns) >= self.log_mean else 0.0
        return NormalDist(self.log_mean, self.log_sd).cdf(math.log(budget_ns))


# Final aliases: a compiled-build accommodation (core/requests.py says why)
_bisect_left: Final = bisect_left
_insort: Final = insort


class LatencyEstimator:
    """One series of durations; ``estimate_ns`` is the configured percentile of the window."""

    __slots__ = (
        "_factor",
        "_full_index",
        "_level",
        "_next",
        "_observed",
        "_rank",
        "_ring",
        "_seed_ns",
        "_sorted",
        "_suspects",
        "_times",
        "_window",
        "_z",
        "estimate_ns",
        "outliers_dropped",
    )

    def __init__(self, seed_ns: int, config: EstimatorConfig) -> None:
        if seed_ns <= 0:
            raise ValueError(f"seed estimate must be > 0 ns, got {seed_ns}")
        self._window = config.window
        # the window as a ring (``_next``: the oldest once full), made at the first measurement:
        # a cluster registers thousands of models times batch sizes, most never measured in a run
        self._ring: list[int] = []
        # when each ring entry was measured
        self._times: list[int] = []
        self._next = 0
        # the same samples in order, kept sorted as they come and go
        self._sorted: list[int] = []
        # nearest-rank percentile: the smallest value with at least p% of samples at or below it
        self._rank = config.percentile / 100.0
        self._full_index = self._index(config.window)
        self._factor = config.outlier_factor
        # the standard normal quantile of the level (0.0: the nearest-rank rule)
        self._z = NormalDist().inv_cdf(config.level) if config.level else 0.0
        self._level = config.level
        # outliers held aside: (duration, measured at, count of measurements when it came)
        self._suspects: list[tuple[int, int, int]] = []
        self._observed = 0
        self._seed_ns = seed_ns
        self.outliers_dropped = 0
        self.estimate_ns = seed_ns

    def _index(self, n: int) -> int:
        return max(0, math.ceil(self._rank * n) - 1)

    def observe(self, duration_ns: int, now_ns: int = 0) -> None:
        """A measurement taken at ``now_ns`` (the scheduler's time)."""
        if duration_ns <= 0:
            return  # a clock glitch must not drive the estimate to zero
        self._observed += 1
        factor = self._factor
        if factor:
            ordered = self._sorted
            # before the first measurement the window is the profile's seed alone
            median = ordered[len(ordered) // 2] if ordered else self.estimate_ns
            if duration_ns > factor * median:
                self._suspect(duration_ns, now_ns)
                return
        self._add(duration_ns, now_ns)

    def _suspect(self, duration_ns: int, now_ns: int) -> None:
        count = self._observed
        held = [s for s in self._suspects if s[2] >= count - self._window]
        self.outliers_dropped += len(self._suspects) - len(held)
        began = now_ns - duration_ns
        if any(t <= began for _, t, _ in held):
            # a second witness that ran after the first had ended: the executor is slower
            # now, not one run. (Runs that overlapped in time, on several devices of one worker,
            # are one episode: a paused worker, not a slower model.)
            self._suspects = []
            for d, t, _ in held:
                self._add(d, t)
            self._add(duration_ns, now_ns)
        else:
            held.append((duration_ns, now_ns, count))
            self._suspects = held

    def _add(self, duration_ns: int, now_ns: int) -> None:
        ordered = self._sorted
        ring = self._ring
        times = self._times
        if not ring:  # the first measurement joins the profile's seed
            ring.append(self.estimate_ns)
            times.append(now_ns)
            ordered.append(self.estimate_ns)
        if len(ring) == self._window:
            i = self._next
            del ordered[_bisect_left(ordered, ring[i])]
            ring[i] = duration_ns
            times[i] = now_ns
            self._next = i + 1 if i + 1 < self._window else 0
            _insort(ordered, duration_ns)
            if self._level:
                self.estimate_ns = self._fitted(ordered)
            else:
                # a full window (the usual case) has a fixed rank
                self.estimate_ns = ordered[self._full_index]
            return
        ring.append(duration_ns)
        times.append(now_ns)
        _insort(ordered, duration_ns)
        if self._level:
            self.estimate_ns = self._fitted(ordered)
        else:
            self.estimate_ns = ordered[self._index(len(ordered))]

    def _fitted(self, values: list[int]) -> int:
        """The level's quantile of a log-normal fit of ``values``."""
        n = len(values)
        if values[0] == values[-1]:  # (sorted) no spread: exactly the runs' duration
            return values[0]
        logs = [math.log(v) for v in values]
        mean = sum(logs) / n
        sd = math.sqrt(sum((x - mean) * (x - mean) for x in logs) / (n - 1))
        return max(1, round(math.exp(mean + self._z * sd)))

    def refresh(self, now_ns: int, max_age_ns: int) -> bool:
        """Forget measurements older than ``max_age_ns``; True if the estimate changed. With
        none left the estimate is the profile's seed again."""
        ring = self._ring
        if not ring:
            return False
        oldest = now_ns - max_age_ns
        i = self._next
        times = self._times[i:] + self._times[:i]
        if times[0] >= oldest:
            return False
        kept = [(d, t) for d, t in zip(self.samples, times, strict=True) if t >= oldest]
        before = self.estimate_ns
        self._ring = []
        self._times = []
        self._sorted = []
        self._next = 0
        self.estimate_ns = self._seed_ns
        self._suspects = [s for s in self._suspects if s[1] >= oldest]
        for d, t in kept:
            if not self._ring:
                # the oldest kept sample takes the seed's place
                self._ring.append(d)
                self._times.append(t)
                self._sorted.append(d)
                self.estimate_ns = d
            else:
                self._add(d, t)
        return self.estimate_ns != before

    @property
    def last_measured_ns(self) -> int:
        """When the newest measurement in the window was taken (-1: none yet)."""
        ring = self._ring
        if not ring:
            return -1
        return self._times[self._next - 1] if len(ring) == self._window else self._times[-1]

    @property
    def samples(self) -> tuple[int, ...]:
        """The window, oldest first."""
        ring = self._ring
        if not ring:
            return (self.estimate_ns,)
        i = self._next
        return tuple(ring[i:] + ring[:i])

    def spread(self) -> Spread:
        values = self.samples
        logs = [math.log(v) for v in values]
        mean = sum(logs) / len(logs)
        sd = (
            math.sqrt(sum((x - mean) ** 2 for x in logs) / (len(logs) - 1))
            if len(logs) > 1
            else 0.0
        )
        ordered = sorted(values)
        return Spread(len(values), ordered[(len(ordered) - 1) // 2], mean, sd)


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

    def refresh(self, now_ns: int, max_age_ns: int) -> bool:
        """Age every series (see ``LatencyEstimator.refresh``); True if an estimate changed."""
        changed = False
        for e in self.exec.values():
            changed = e.refresh(now_ns, max_age_ns) or changed
        return changed
