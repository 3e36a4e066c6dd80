"""The attainment bound never claims more misses than the best schedule has (checked by brute
force on tiny instances), and its per-model work is the cheapest relaxed partition."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clockwork.core.errors import InvalidInputError
from clockwork.sim.attainment_bound import (
    attainment_bound,
    batch_costs,
    drops_needed,
    model_drop_cost,
    model_work,
    window_bound,
)

EXEC = {1: 30, 2: 45, 4: 60}
COSTS = batch_costs(EXEC)
SLO = 100


def partitions(items: Sequence[int]) -> Iterator[list[list[int]]]:
    """Every set partition of ``items``."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in partitions(rest):
        for i in range(len(part)):
            yield [*part[:i], [first, *part[i]], *part[i + 1 :]]
        yield [[first], *part]


def true_feasible(
    times: Sequence[int], batch: Sequence[int], serve: int, costs: Sequence[int] = COSTS
) -> bool:
    ts = [times[i] for i in batch]
    return len(batch) <= len(costs) - 1 and max(ts) - min(ts) + costs[len(batch)] <= serve


def test_batch_costs_pad_to_the_cheapest_size_that_holds_k() -> None:
    assert COSTS == [0, 30, 45, 60, 60]
    assert batch_costs({1: 10, 4: 8}) == [0, 8, 8, 8, 8]
    with pytest.raises(InvalidInputError):
        batch_costs({})
    with pytest.raises(InvalidInputError):
        batch_costs({0: 5})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 250), min_size=1, max_size=7))
def test_model_work_is_the_cheapest_relaxed_partition_and_below_the_true_one(
    raw: list[int],
) -> None:
    times = sorted(raw)
    idx = list(range(len(times)))
    relaxed_best = true_best = 1 << 60
    for part in partitions(idx):
        cost = sum(COSTS[len(b)] for b in part if len(b) < len(COSTS))
        if any(len(b) >= len(COSTS) for b in part):
            continue
        spans_ok = all(
            max(times[i] for i in b) - min(times[i] for i in b) + COSTS[1] <= SLO for b in part
        )
        if spans_ok:
            relaxed_best = min(relaxed_best, cost)
        if all(true_feasible(times, b, SLO) for b in part):
            true_best = min(true_best, cost)
    work = model_work(times, SLO, COSTS)
    assert work == relaxed_best
    assert work <= true_best


def test_model_work_refuses_a_window_too_short_for_one_request() -> None:
    with pytest.raises(InvalidInputError):
        model_work([0], 20, COSTS)
    assert model_work([], 20, COSTS) == 0


def one_device_schedulable(
    times: Sequence[int], models: Sequence[int], served: Sequence[int], costs: Sequence[int]
) -> bool:
    """Whether one device can serve exactly ``served`` inside their deadlines (brute force)."""
    by_model: dict[int, list[int]] = {}
    for i in served:
        by_model.setdefault(models[i], []).append(i)
    per_model = [list(partitions(v)) for v in by_model.values()]
    for combo in itertools.product(*per_model):
        batches = [b for part in combo for b in part]
        if not all(true_feasible(times, b, SLO, costs) for b in batches):
            continue
        for order in itertools.permutations(batches):
            clock = 0
            for b in order:
                start = max(clock, *(times[i] for i in b))
                clock = start + costs[len(b)]
                if clock > min(times[i] for i in b) + SLO:
                    break
            else:
                return True
    return False


def exact_min_missed(
    times: Sequence[int], models: Sequence[int], costs: Sequence[int] = COSTS
) -> int:
    n = len(times)
    for missed in range(n + 1):
        for dropped in itertools.combinations(range(n), missed):
            served = [i for i in range(n) if i not in dropped]
            if one_device_schedulable(times, models, served, costs):
                return missed
    return n


@settings(max_examples=200, deadline=None)
@given(
    # Few distinct times and models and slow batches (two of one fill the SLO), so that windows
    # fill up and the bound has to bite.
    st.lists(
        st.tuples(st.sampled_from([0, 0, 5, 10, 25, 30, 60, 100, 130]), st.integers(0, 3)),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from([100, 130, 200]),
    st.integers(0, 3),
)
def test_the_bound_never_exceeds_the_best_schedules_misses(
    reqs: list[tuple[int, int]], window: int, offset_quarters: int
) -> None:
    costs = batch_costs({1: 45, 2: 55, 4: 70})
    reqs.sort()
    times = [t for t, _ in reqs]
    models = [m for _, m in reqs]
    bound = window_bound(
        np.array(times, dtype=np.int64),
        np.array(models, dtype=np.int64),
        slo_ns=SLO,
        costs=costs,
        devices=1,
        window_ns=window,
        offset_ns=window * offset_quarters // 4,
    )
    assert 0 <= bound.min_missed <= exact_min_missed(times, models, costs)
    assert bound.requests == len(times) and bound.core_requests <= len(times)


def test_the_bound_bites_when_a_window_asks_for_more_than_the_devices_have() -> None:
    # Four models' requests at 0 on one device: three batches of one fit in 100, four do not.
    times = np.zeros(4, dtype=np.int64)
    models = np.arange(4, dtype=np.int64)
    r = window_bound(times, models, slo_ns=SLO, costs=COSTS, devices=1, window_ns=100)
    assert (r.core_requests, r.min_missed, r.busiest_window_work_ns) == (4, 1, 120)
    assert exact_min_missed([0, 0, 0, 0], [0, 1, 2, 3]) == 1
    assert r.attainment_bound == pytest.approx(3 / 4)
    # Two devices serve all four; the same model batches them on one.
    assert (
        window_bound(times, models, slo_ns=SLO, costs=COSTS, devices=2, window_ns=100).min_missed
        == 0
    )
    same = np.zeros(4, dtype=np.int64)
    assert (
        window_bound(times, same, slo_ns=SLO, costs=COSTS, devices=1, window_ns=100).min_missed == 0
    )


def test_lead_and_tail_shrink_the_service_window() -> None:
    times = np.zeros(2, dtype=np.int64)
    models = np.arange(2, dtype=np.int64)
    # Without delays two batches of 30 fit in 100; with 25 each way only one fits in 50, and
    # only a window that is exactly the service interval [25, 75] sees it.
    assert (
        window_bound(times, models, slo_ns=SLO, costs=COSTS, devices=1, window_ns=200).min_missed
        == 0
    )
    r = window_bound(
        times, models, slo_ns=SLO, costs=COSTS, devices=1, window_ns=200, lead_ns=25, tail_ns=25
    )
    assert r.min_missed == 0  # the window (200) is wider than the service interval
    r = window_bound(
        times,
        models,
        slo_ns=SLO,
        costs=COSTS,
        devices=1,
        window_ns=50,
        offset_ns=25,
        lead_ns=25,
        tail_ns=25,
    )
    assert (r.core_requests, r.min_missed) == (2, 1)


def test_attainment_bound_keeps_the_tightest_window_and_checks_its_input() -> None:
    times = np.array([0, 0, 0, 0, 500], dtype=np.int64)
    models = np.array([0, 1, 2, 3, 0], dtype=np.int64)
    best = attainment_bound(
        times, models, slo_ns=SLO, costs=COSTS, devices=1, windows_ns=[100, 1000]
    )
    assert best.min_missed == 1
    with pytest.raises(InvalidInputError):
        attainment_bound(times, models, slo_ns=SLO, costs=COSTS, devices=1, windows_ns=[])
    with pytest.raises(InvalidInputError):
        window_bound(times, models[:2], slo_ns=SLO, costs=COSTS, devices=1, window_ns=100)
    with pytest.raises(InvalidInputError):
        window_bound(times, models, slo_ns=SLO, costs=COSTS, devices=0, window_ns=100)


def test_without_a_forced_miss_the_fullest_window_is_reported() -> None:
    times = np.zeros(2, dtype=np.int64)
    models = np.arange(2, dtype=np.int64)
    best = attainment_bound(
        times, models, slo_ns=SLO, costs=COSTS, devices=1, windows_ns=[1000, 100], offsets=1
    )
    assert (best.min_missed, best.window_ns, best.busiest_window_work_ns) == (0, 100, 60)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0, 0, 0, 5, 10, 25, 30, 60, 100]), st.integers(0, 2)),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from([100, 130]),
)
def test_counting_what_drops_save_stays_a_bound_and_never_loosens_it(
    reqs: list[tuple[int, int]], window: int
) -> None:
    costs = batch_costs({1: 45, 2: 55, 4: 70})
    reqs.sort()
    times = np.array([t for t, _ in reqs], dtype=np.int64)
    models = np.array([m for _, m in reqs], dtype=np.int64)
    kw = {"slo_ns": SLO, "costs": costs, "devices": 1, "window_ns": window}
    simple = window_bound(times, models, **kw)  # type: ignore[arg-type]
    exact = window_bound(times, models, exact_drops=True, **kw)  # type: ignore[arg-type]
    assert simple.min_missed <= exact.min_missed
    assert exact.min_missed <= exact_min_missed(times.tolist(), models.tolist(), costs)


def test_drops_that_save_less_than_a_batch_of_one_are_counted_as_such() -> None:
    # 32 requests of one model at once, one device, a window of 100: batches of 4 (60) hold 32
    # in 480, 380 too many. Charged 30 (a batch of one) each, 13 drops; but a drop from a full
    # batch of 4 saves 15, and L(lam) peaks at lam = 1/15: 380 / 15 = 25.3, so 26. (Exactly: a
    # batch of 4 and one of 1 fit, 27 must go.)
    times = np.zeros(32, dtype=np.int64)
    models = np.zeros(32, dtype=np.int64)
    kw = {"slo_ns": SLO, "costs": COSTS, "devices": 1, "window_ns": 100}
    assert window_bound(times, models, **kw).min_missed == 13  # type: ignore[arg-type]
    assert window_bound(times, models, exact_drops=True, **kw).min_missed == 26  # type: ignore[arg-type]
    # nothing to drop, nothing counted
    assert drops_needed([[0, 0, 0]], SLO, COSTS, 100) == 0
    assert model_drop_cost([], SLO, COSTS, 0.5) == 0


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from([0, 0, 5, 10, 20, 30, 40, 55, 70, 90]), min_size=0, max_size=8),
    st.sampled_from([0.005, 0.01, 0.02, 0.05, 0.1]),
    st.sampled_from([{1: 30, 2: 45, 4: 60}, {1: 10, 2: 12, 4: 15}]),
)
def test_a_models_drop_cost_is_the_best_over_every_subset_kept(
    raw: list[int], lam: float, exec_ns: dict[int, int]
) -> None:
    # ranges longer than the largest batch included (the programme's sliding minimum)
    costs = batch_costs(exec_ns)
    times = sorted(raw)
    n = len(times)
    brute = min(
        (n - len(kept)) + lam * model_work([times[i] for i in kept], SLO, costs)
        for r in range(n + 1)
        for kept in itertools.combinations(range(n), r)
    )
    assert model_drop_cost(times, SLO, costs, lam) == pytest.approx(brute, abs=1e-9)
