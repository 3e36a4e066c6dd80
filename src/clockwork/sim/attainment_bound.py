"""An upper bound on the SLO attainment that *any* schedule could reach on a given arrival stream.

A simulated run says what one policy achieved; this says what no policy can beat, so that a
shortfall can be told apart from an impossible goal. It holds for any scheduler on ``devices``
identical devices whose batches take exactly the profile's times (a batch of ``k`` runs at the
smallest supported size ``>= k``), every model already resident (loads only make it harder), a
request served only by a batch that starts no earlier than its arrival plus ``lead_ns`` and ends
no later than its deadline minus ``tail_ns``.

**Why it holds.** Cut time into windows of length ``W`` and keep, in each window, the *core*
requests: those whose whole service interval ``[arrival + lead, deadline - tail]`` lies inside
it. A batch serving a core request of a window runs inside that window, so no batch mixes two
windows' core requests, and the served core requests of one window need at most ``devices * W``
of device time. The least device time that serves a set ``S`` of one model's requests,
``work(S)``, is computed exactly (below). Adding one request to a schedule as a batch of its own
costs ``exec(1)`` and is always feasible, so ``work(S) <= work(S - D) + |D| * exec(1)``: a window
whose core needs ``work`` device time must drop at least ``ceil((work - devices * W) /
exec(1))`` requests. Summed over windows, that is a lower bound on the requests any schedule
misses, for every ``W`` and grid offset; :func:`attainment_bound` takes the best of several.

**work(S) for one model, relaxed.** A batch of ``k`` requests is feasible when its span (last
arrival less first) plus ``exec(k)`` fits the service window ``slo - lead - tail``. Computing the
cheapest partition exactly is awkward: a small batch spanning a wide interval may have to
enclose a larger, tighter one. Relaxing the rule to "span plus ``exec(1)`` fits" only admits more
partitions, so its cheapest cost is still a lower bound, and with one span limit for every size
two batches that cross or nest can always be traded for the first and the last of their merged
requests at no cost: some cheapest relaxed partition batches requests in arrival order, and a
dynamic programme over the sorted arrivals (every last batch of 1..max-batch requests) finds it.
A batch of ``k`` costs the least time of the supported sizes ``>= k``. All requests of a model
are assumed to have the same SLO, as in the replays this is for.

**Dropping what saves most (``exact_drops``).** Charging every dropped request ``exec(1)`` is
right while the schedule can drop requests that would run alone; once those are gone (a
sustained overload), a drop saves less. A tighter count, by Lagrangian relaxation: the served
core ``S'`` of a window must fit, ``sum_m work(S'_m) <= devices * W``, so for every ``lam >= 0``
the misses ``|S - S'|`` are at least ``|S - S'| + lam * (sum_m work(S'_m) - devices * W)``, and
so at least ``L(lam) = sum_m min over S'_m of (|S_m - S'_m| + lam * work(S'_m)) - lam * devices
* W`` (weak duality). Each model's minimum is a dynamic programme like ``model_work``'s, where
each request is dropped (cost 1) or served, a batch spanning the arrivals ``j..i`` (both kept,
the span rule as above) keeping ``k`` of its ``n`` requests for ``lam * costs[k] + n - k``
(the exchange argument holds for the kept requests as for all). ``L`` is concave in ``lam``:
its maximum, found by a golden-section search, rounded up, is the bound, never below the
``exec(1)`` one's, which ``L(1 / exec(1))`` does not exceed.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from clockwork.core.errors import InvalidInputError


def batch_costs(exec_ns: Mapping[int, int]) -> list[int]:
    """``costs[k]`` for ``k`` in ``1..max batch``: the least time of the supported batch sizes
    that hold ``k`` requests (``costs[0]`` is 0). Non-decreasing in ``k``."""
    if not exec_ns or any(b < 1 or t <= 0 for b, t in exec_ns.items()):
        raise InvalidInputError(
            f"batch_costs: need positive batch sizes and times, got {exec_ns!r}"
        )
    sizes = sorted(exec_ns)
    return [0] + [min(exec_ns[b] for b in sizes if b >= k) for k in range(1, sizes[-1] + 1)]


def model_work(times_ns: Sequence[int], serve_ns: int, costs: Sequence[int]) -> int:
    """A lower bound on the device time (ns) that serves every request of one model: the
    cheapest partition of the sorted arrivals ``times_ns`` into batches whose span plus
    ``costs[1]`` fits ``serve_ns`` (the relaxation of the module's docstring). Raises when not
    even a batch of one fits."""
    n = len(times_ns)
    if n == 0:
        return 0
    reach = serve_ns - costs[1]
    if reach < 0:
        raise InvalidInputError(
            f"model_work: a batch of one ({costs[1]} ns) does not fit the {serve_ns} ns window"
        )
    max_batch = len(costs) - 1
    best = [0] * (n + 1)
    for i in range(1, n + 1):
        last = times_ns[i - 1]
        b = best[i - 1] + costs[1]
        for k in range(2, min(max_batch, i) + 1):
            j = i - k
            if last - times_ns[j] > reach:
                break
            b = min(b, best[j] + costs[k])
        best[i] = b
    return best[n]


def model_drop_cost(
    times_ns: Sequence[int], serve_ns: int, costs: Sequence[int], lam: float
) -> float:
    """The least of ``dropped + lam * work(kept)`` over the subsets of one model's sorted
    arrivals ``times_ns`` kept, and their relaxed partitions (the module's docstring)."""
    n = len(times_ns)
    reach = serve_ns - costs[1]
    max_batch = len(costs) - 1
    alone = min(1.0, lam * costs[1])
    # best_k[m]: the least of lam * costs[k] - k over 2 <= k <= m (a range of m or more)
    best_k = [math.inf] * (max_batch + 1)
    for m in range(2, max_batch + 1):
        best_k[m] = min(best_k[m - 1], lam * costs[m] - m)
    best = [0.0] * (n + 1)
    lo = 0
    # ranges of more than max_batch requests: the least best[j] - j, j sliding with ``lo``
    far: deque[tuple[int, float]] = deque()
    for i in range(1, n + 1):
        last = times_ns[i - 1]
        b = best[i - 1] + alone
        while last - times_ns[lo] > reach:
            lo += 1
        # a batch from arrival j to arrival i - 1: n = i - j requests, all but k dropped
        for j in range(max(lo, i - max_batch), i - 1):
            v = best[j] + (i - j) + best_k[i - j]
            b = min(b, v)
        r = i - max_batch - 1
        if r >= 0 and max_batch >= 2:
            value = best[r] - r
            while far and far[-1][1] >= value:
                far.pop()
            far.append((r, value))
        while far and far[0][0] < lo:
            far.popleft()
        if far:
            v = far[0][1] + i + best_k[max_batch]
            b = min(b, v)
        best[i] = b
    return best[n]


def drops_needed(
    groups: Sequence[Sequence[int]], serve_ns: int, costs: Sequence[int], capacity_ns: int
) -> int:
    """The least number of the requests ``groups`` (each one model's sorted arrivals) that any
    schedule fitting ``capacity_ns`` of device time must drop: the Lagrangian bound of the
    module's docstring, maximised over ``lam`` by golden-section search."""

    def dual(lam: float) -> float:
        return sum(model_drop_cost(g, serve_ns, costs, lam) for g in groups) - lam * capacity_ns

    lo, hi = 0.0, 4.0 / costs[1]
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = dual(a), dual(b)
    best = max(0.0, fa, fb, dual(1.0 / costs[1]))
    for _ in range(24):
        if fa < fb:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = dual(b)
        else:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = dual(a)
        best = max(best, fa, fb)
    # every L(lam) is a valid bound: the best seen, less a hair of float error, rounded up
    return max(0, math.ceil(best - 1e-6))


@dataclass(frozen=True, slots=True)
class BoundResult:
    """The bound for one window length and grid offset."""

    window_ns: int
    offset_ns: int
    requests: int
    core_requests: int
    min_missed: int
    busiest_window_work_ns: int

    @property
    def attainment_bound(self) -> float:
        return 1.0 - self.min_missed / self.requests if self.requests else 1.0


def window_bound(
    times_ns: NDArray[np.int64],
    models: NDArray[np.int64],
    *,
    slo_ns: int,
    costs: Sequence[int],
    devices: int,
    window_ns: int,
    offset_ns: int = 0,
    lead_ns: int = 0,
    tail_ns: int = 0,
    exact_drops: bool = False,
) -> BoundResult:
    """The least number of requests any schedule must miss, from windows of ``window_ns``
    starting at ``offset_ns`` (mod ``window_ns``); see the module's docstring. With
    ``exact_drops``, an overloaded window's misses are also counted by what dropping saves
    (``drops_needed``; slower), and the larger count is kept."""
    if devices < 1 or window_ns < 1 or slo_ns < 1 or lead_ns < 0 or tail_ns < 0:
        raise InvalidInputError(
            f"window_bound: devices, window, SLO must be positive and lead, tail >= 0; got "
            f"{devices}, {window_ns}, {slo_ns}, {lead_ns}, {tail_ns}"
        )
    if len(times_ns) != len(models):
        raise InvalidInputError("window_bound: times_ns and models differ in length")
    serve_ns = slo_ns - lead_ns - tail_ns
    n = len(times_ns)
    if n == 0:
        return BoundResult(window_ns, offset_ns, 0, 0, 0, 0)
    start = times_ns + lead_ns
    win = (start - offset_ns) // window_ns
    # Core: the whole service interval [start, start + serve] inside the window.
    core = start + serve_ns <= (win + 1) * window_ns + offset_ns
    if serve_ns < costs[1]:
        # No request can be served at all.
        return BoundResult(window_ns, offset_ns, n, n, n, 0)
    core_times, core_models, core_win = times_ns[core], models[core], win[core]
    order = np.lexsort((core_times, core_models, core_win))
    c_times = core_times[order].tolist()
    c_models = core_models[order].tolist()
    c_win = core_win[order].tolist()
    capacity = devices * window_ns
    missed = 0
    busiest = 0
    i = 0
    m = len(c_times)
    while i < m:
        w = c_win[i]
        work = 0
        groups = []
        while i < m and c_win[i] == w:
            model = c_models[i]
            j = i
            while j < m and c_win[j] == w and c_models[j] == model:
                j += 1
            groups.append(c_times[i:j])
            work += model_work(groups[-1], serve_ns, costs)
            i = j
        busiest = max(busiest, work)
        if work > capacity:
            simple = math.ceil((work - capacity) / costs[1])
            if exact_drops:
                simple = max(simple, drops_needed(groups, serve_ns, costs, capacity))
            missed += simple
    return BoundResult(window_ns, offset_ns, n, len(c_times), missed, busiest)


def attainment_bound(
    times_ns: NDArray[np.int64],
    models: NDArray[np.int64],
    *,
    slo_ns: int,
    costs: Sequence[int],
    devices: int,
    windows_ns: Sequence[int],
    offsets: int = 4,
    lead_ns: int = 0,
    tail_ns: int = 0,
    exact_drops: bool = False,
) -> BoundResult:
    """The tightest :func:`window_bound` over ``windows_ns``, each at ``offsets`` evenly spaced
    grid offsets (every one is a valid bound; the largest ``min_missed`` wins, then the fullest
    busiest window, the one closest to forcing a miss)."""
    if not windows_ns or offsets < 1:
        raise InvalidInputError("attainment_bound: need at least one window and one offset")
    best: BoundResult | None = None
    for w in windows_ns:
        for k in range(offsets):
            r = window_bound(
                times_ns,
                models,
                slo_ns=slo_ns,
                costs=costs,
                devices=devices,
                window_ns=w,
                offset_ns=w * k // offsets,
                lead_ns=lead_ns,
                tail_ns=tail_ns,
                exact_drops=exact_drops,
            )
            if best is None or (r.min_missed, r.busiest_window_work_ns * best.window_ns) > (
                best.min_missed,
                best.busiest_window_work_ns * r.window_ns,
            ):
                best = r
    assert best is not None
    return best
