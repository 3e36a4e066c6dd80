"""Synthetic arrival generators: closed loop, Poisson, fixed rate, bursty, SLO sweep."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clockwork.core.errors import InvalidInputError
from clockwork.core.units import NS_PER_MS, NS_PER_S
from clockwork.workload import (
    Arrival,
    Bursty,
    ClosedLoop,
    FixedRate,
    PoissonOpenLoop,
    SloSweep,
    Workload,
)

MODELS = ("a", "b", "c")
SLO = 100 * NS_PER_MS


def times_of(arrivals: list[Arrival]) -> list[int]:
    return [a.time_ns for a in arrivals]


def assert_nondecreasing(arrivals: list[Arrival]) -> None:
    times = times_of(arrivals)
    assert all(x <= y for x, y in itertools.pairwise(times))


def make_open_loop(kind: str, seed: int, duration_ns: int) -> Workload:
    if kind == "poisson":
        return PoissonOpenLoop(MODELS, 500.0, duration_ns, SLO, seed)
    if kind == "weighted":
        return PoissonOpenLoop(MODELS, 500.0, duration_ns, SLO, seed, weights=[3.0, 0.0, 1.0])
    if kind == "bursty":
        return Bursty(MODELS, 2000.0, 10.0, 50 * NS_PER_MS, 150 * NS_PER_MS, duration_ns, SLO, seed)
    if kind == "sweep":
        return SloSweep(MODELS, 500.0, duration_ns, SLO, 0.5, 100 * NS_PER_MS, seed)
    assert kind == "fixed"
    return FixedRate(MODELS, 500.0, duration_ns, SLO)


KINDS = ["poisson", "weighted", "bursty", "sweep", "fixed"]


# ---------------------------------------------------------------- properties shared by all


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    seed=st.integers(0, 2**32),
    duration_ns=st.integers(1, 2 * NS_PER_S),
)
def test_open_loop_deterministic_sorted_and_within_duration(
    kind: str, seed: int, duration_ns: int
) -> None:
    wl = make_open_loop(kind, seed, duration_ns)
    first = list(wl.arrivals())
    assert first == list(wl.arrivals())  # re-iterable, same seed -> same arrivals
    assert first == list(make_open_loop(kind, seed, duration_ns).arrivals())
    assert_nondecreasing(first)
    assert all(0 <= a.time_ns < duration_ns for a in first)
    assert all(a.model in MODELS and a.slo_ns > 0 for a in first)
    if first:
        assert wl.on_response(first[0], first[0].time_ns + 1) is None
    desc = wl.describe()
    assert desc["synthetic"] is True
    assert desc["duration_ns"] == duration_ns


@pytest.mark.parametrize("kind", ["poisson", "weighted", "bursty", "sweep"])
def test_different_seeds_differ(kind: str) -> None:
    a = list(make_open_loop(kind, 1, NS_PER_S).arrivals())
    b = list(make_open_loop(kind, 2, NS_PER_S).arrivals())
    assert a != b


# ---------------------------------------------------------------- Poisson and fixed rate


def test_poisson_mean_rate_and_uniform_models() -> None:
    duration = 100 * NS_PER_S
    arrivals = list(PoissonOpenLoop(MODELS, 1000.0, duration, SLO, seed=7).arrivals())
    # 100,000 expected, sd ~316: 2% is over 6 sd.
    assert len(arrivals) == pytest.approx(100_000, rel=0.02)
    for m in MODELS:
        share = sum(a.model == m for a in arrivals) / len(arrivals)
        assert share == pytest.approx(1 / 3, abs=0.01)
    # Exponential gaps: mean 1 ms, coefficient of variation ~1 (a fixed rate would be ~0).
    gaps = [y - x for x, y in itertools.pairwise(times_of(arrivals))]
    mean = sum(gaps) / len(gaps)
    sd = math.sqrt(sum((g - mean) ** 2 for g in gaps) / len(gaps))
    assert mean == pytest.approx(NS_PER_MS, rel=0.03)
    assert sd / mean == pytest.approx(1.0, abs=0.05)
    # Uniform in time: each tenth of the run holds about a tenth of the arrivals.
    tenths = [0] * 10
    for a in arrivals:
        tenths[a.time_ns * 10 // duration] += 1
    assert all(abs(c - 10_000) < 600 for c in tenths)


def test_poisson_weights() -> None:
    wl = PoissonOpenLoop(MODELS, 2000.0, 10 * NS_PER_S, SLO, seed=3, weights=[3, 0, 1])
    arrivals = list(wl.arrivals())
    counts = {m: sum(a.model == m for a in arrivals) for m in MODELS}
    assert counts["b"] == 0
    assert counts["a"] / len(arrivals) == pytest.approx(0.75, abs=0.02)


def test_poisson_rate_zero_gives_nothing() -> None:
    assert list(PoissonOpenLoop(MODELS, 0.0, NS_PER_S, SLO, seed=1).arrivals()) == []


def test_fixed_rate_even_spacing_and_round_robin() -> None:
    arrivals = list(FixedRate(MODELS, 1000.0, NS_PER_S, SLO).arrivals())
    assert len(arrivals) == 1000
    assert times_of(arrivals) == [k * NS_PER_MS for k in range(1000)]
    assert [a.model for a in arrivals[:6]] == ["a", "b", "c", "a", "b", "c"]
    # The count is exact for a non-integer interval too: ceil(duration * rate).
    assert len(list(FixedRate(MODELS, 3.0, NS_PER_S, SLO).arrivals())) == 3
    # Longer than one vectorised chunk.
    many = list(FixedRate(("x",), 100_000.0, NS_PER_S + 5, SLO).arrivals())
    assert len(many) == 100_001
    assert_nondecreasing(many)


# ---------------------------------------------------------------- bursty


def test_bursty_rates_per_phase() -> None:
    on, off = 100 * NS_PER_MS, 300 * NS_PER_MS
    wl = Bursty(MODELS, 5000.0, 100.0, on, off, 40 * NS_PER_S, SLO, seed=11)
    arrivals = list(wl.arrivals())
    n_on = sum(wl.is_on(a.time_ns) for a in arrivals)
    n_off = len(arrivals) - n_on
    # 100 cycles: 10 s on at 5000/s = 50,000; 30 s off at 100/s = 3,000.
    assert n_on == pytest.approx(50_000, rel=0.03)
    assert n_off == pytest.approx(3_000, rel=0.1)
    assert wl.describe()["mean_rate_rps"] == pytest.approx(1325.0)


def test_bursty_zero_off_rate_is_silent_when_off() -> None:
    wl = Bursty(MODELS, 1000.0, 0.0, 10 * NS_PER_MS, 10 * NS_PER_MS, NS_PER_S, SLO, seed=1)
    arrivals = list(wl.arrivals())
    assert arrivals
    assert all(wl.is_on(a.time_ns) for a in arrivals)


# ---------------------------------------------------------------- SLO sweep


def test_slo_sweep_halves_every_period() -> None:
    period = 200 * NS_PER_MS
    wl = SloSweep(MODELS, 1000.0, NS_PER_S, 64 * NS_PER_MS, 0.5, period, seed=5)
    arrivals = list(wl.arrivals())
    assert arrivals
    for a in arrivals:
        assert a.slo_ns == (64 * NS_PER_MS) >> (a.time_ns // period)
    seen = sorted({a.slo_ns for a in arrivals}, reverse=True)
    assert seen == [64 * NS_PER_MS >> p for p in range(5)]
    assert wl.slo_schedule() == [(p * period, 64 * NS_PER_MS >> p) for p in range(5)]


def test_slo_sweep_floor_and_growth() -> None:
    wl = SloSweep(MODELS, 10.0, 10 * NS_PER_S, 1000, 0.1, NS_PER_S, seed=1, min_slo_ns=50)
    assert [s for _, s in wl.slo_schedule()] == [1000, 100, 50, 50, 50, 50, 50, 50, 50, 50]
    grow = SloSweep(MODELS, 10.0, 3 * NS_PER_S, 1000, 2.0, NS_PER_S, seed=1)
    assert grow.slo_at(2 * NS_PER_S + 5) == 4000
    huge = SloSweep(MODELS, 10.0, 10_000 * NS_PER_S, 1000, 1e6, NS_PER_S, seed=1)
    assert 0 < huge.slo_at(9_999 * NS_PER_S) <= 2**62  # clamped, no overflow


# ---------------------------------------------------------------- closed loop


def test_closed_loop_initial_requests_staggered() -> None:
    wl = ClosedLoop(MODELS, 2, SLO, duration_ns=NS_PER_S, think_ns=5)
    first = list(wl.arrivals())
    assert times_of(first) == list(range(6))
    assert [a.model for a in first] == ["a", "b", "c", "a", "b", "c"]
    assert wl.describe()["concurrency"] == 2
    assert wl.describe()["synthetic"] is True


def test_closed_loop_follow_up_only_after_response() -> None:
    wl = ClosedLoop(("m",), 1, SLO, duration_ns=1000, think_ns=10)
    (first,) = wl.arrivals()
    nxt = wl.on_response(first, 400)
    assert nxt == Arrival(410, "m", SLO)
    # The priority is kept; the follow-up must be before duration_ns (1000).
    assert wl.on_response(Arrival(900, "m", SLO, priority=2), 989) == Arrival(999, "m", SLO, 2)
    assert wl.on_response(Arrival(900, "m", SLO), 990) is None  # 1000 is not before the end


def test_closed_loop_simulated_clients_keep_concurrency() -> None:
    """Drive it with a fake server of fixed 1 ms service time: each client sends back to back."""
    service = NS_PER_MS
    wl = ClosedLoop(("x", "y"), 3, SLO, duration_ns=100 * NS_PER_MS, think_ns=0)
    pending = list(wl.arrivals())
    sent = 0
    outstanding_max = 0
    while pending:
        pending.sort(key=lambda a: a.time_ns)
        outstanding_max = max(outstanding_max, len(pending))
        a = pending.pop(0)
        sent += 1
        nxt = wl.on_response(a, a.time_ns + service)
        if nxt is not None:
            assert nxt.time_ns >= a.time_ns + service
            pending.append(nxt)
    assert outstanding_max == 6
    # Each of 6 clients: requests at ~0, 1, ..., 99 ms -> 100 each.
    assert sent == 600


def test_closed_loop_rejects_foreign_or_early_response() -> None:
    wl = ClosedLoop(("m",), 1, SLO, duration_ns=1000)
    with pytest.raises(InvalidInputError, match="never sent"):
        wl.on_response(Arrival(0, "other", SLO), 5)
    with pytest.raises(InvalidInputError, match="before its request"):
        wl.on_response(Arrival(10, "m", SLO), 5)


def test_closed_loop_duration_cuts_initial_requests() -> None:
    assert len(list(ClosedLoop(MODELS, 5, SLO, duration_ns=4).arrivals())) == 4


# ---------------------------------------------------------------- parameter validation


@pytest.mark.parametrize(
    ("factory", "needle"),
    [
        (lambda: PoissonOpenLoop([], 1.0, NS_PER_S, SLO, 1), "models is empty"),
        (lambda: PoissonOpenLoop("abc", 1.0, NS_PER_S, SLO, 1), "sequence of model names"),
        (lambda: PoissonOpenLoop(["a", "a"], 1.0, NS_PER_S, SLO, 1), "appears twice"),
        (lambda: PoissonOpenLoop(["a"], -1.0, NS_PER_S, SLO, 1), "rate_rps"),
        (lambda: PoissonOpenLoop(["a"], math.nan, NS_PER_S, SLO, 1), "rate_rps"),
        (lambda: PoissonOpenLoop(["a"], 1.0, 0, SLO, 1), "duration_ns"),
        (lambda: PoissonOpenLoop(["a"], 1.0, NS_PER_S, 0, 1), "slo_ns"),
        (lambda: PoissonOpenLoop(["a"], 1.0, NS_PER_S, SLO, -1), "seed"),
        (lambda: PoissonOpenLoop(["a"], 1.0, NS_PER_S, SLO, 1, weights=[1, 2]), "weights"),
        (lambda: PoissonOpenLoop(["a"], 1.0, NS_PER_S, SLO, 1, weights=[0]), "sum to 0"),
        (lambda: FixedRate(["a"], 0.0, NS_PER_S, SLO), "rate_rps"),
        (lambda: Bursty(["a"], 1.0, 1.0, 0, 1, NS_PER_S, SLO, 1), "on_ns"),
        (lambda: SloSweep(["a"], 1.0, NS_PER_S, SLO, 0.0, NS_PER_S, 1), "factor"),
        (lambda: SloSweep(["a"], 1.0, NS_PER_S, SLO, 0.5, 0, 1), "period_ns"),
        (lambda: ClosedLoop(["a"], 0, SLO, NS_PER_S), "concurrency"),
        (lambda: ClosedLoop(["a"], 1, SLO, NS_PER_S, think_ns=-1), "think_ns"),
        (lambda: ClosedLoop(["a"], True, SLO, NS_PER_S), "concurrency"),
    ],
)
def test_bad_parameters_raise(factory: object, needle: str) -> None:
    assert callable(factory)
    with pytest.raises(InvalidInputError, match=needle):
        factory()
