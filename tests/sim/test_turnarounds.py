"""The worker's turnarounds drawn from measured quantiles (``sim.turnarounds``)."""

from __future__ import annotations

import statistics

import pytest

from clockwork.sim.turnarounds import Turnarounds, check_quantiles


def test_draws_follow_the_quantiles_and_the_seed() -> None:
    # half the mass from 0 to 100 ns, half from 100 to 1,000: median 100, mean 300
    draws = [Turnarounds((0, 100, 1_000), seed=3).next_ns() for _ in range(1)]
    t = Turnarounds((0, 100, 1_000), seed=3)
    many = [t.next_ns() for _ in range(20_000)]
    assert draws[0] == many[0]  # the same seed draws the same
    assert min(many) >= 0 and max(many) <= 1_000
    assert statistics.median(many) == pytest.approx(100, abs=10)
    assert statistics.fmean(many) == pytest.approx(300, rel=0.05)
    other = Turnarounds((0, 100, 1_000), seed=4)
    assert [other.next_ns() for _ in range(20)] != many[:20]


def test_a_constant_distribution_draws_its_value() -> None:
    t = Turnarounds((250, 250), seed=1)
    assert {t.next_ns() for _ in range(5_000)} == {250}


@pytest.mark.parametrize(
    ("quantiles", "words"),
    [((5,), "at least two"), ((-1, 3), ">= 0"), ((1, 3, 2), "must not decrease")],
)
def test_bad_quantiles_are_refused_by_name(quantiles: tuple[int, ...], words: str) -> None:
    assert words in check_quantiles(quantiles)
    with pytest.raises(ValueError, match=words):
        Turnarounds(quantiles, seed=0)
    assert check_quantiles(()) == ""  # none: the constant turnaround
