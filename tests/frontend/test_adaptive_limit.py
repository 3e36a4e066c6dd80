"""The door's adaptive limit on inference requests in flight (``adaptive_limit``), sans-IO."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clockwork.frontend.adaptive_limit import AdaptiveLimit

MS = 1_000_000


def misses_until_cut(limit: AdaptiveLimit, start_ns: int) -> int:
    """Misses of requests admitted from ``start_ns`` on, one per ms, until the limit is cut."""
    before = limit.cuts
    for i in range(1, 1000):
        limit.answered(start_ns + i * MS, start_ns + i * MS + 1, met=False)
        if limit.cuts > before:
            return i
    raise AssertionError("the limit was never cut")


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="floor <= initial <= ceiling"):
        AdaptiveLimit(2, 4, 8)
    with pytest.raises(ValueError, match="backoff"):
        AdaptiveLimit(4, 1, 8, backoff=1.0)
    with pytest.raises(ValueError, match="window"):
        AdaptiveLimit(4, 1, 8, window=0)


def test_it_admits_below_the_limit_only() -> None:
    limit = AdaptiveLimit(4, 1, 8)
    assert limit.admits(3) and not limit.admits(4) and not limit.admits(9)


def test_answers_in_time_raise_it_only_while_it_binds() -> None:
    limit = AdaptiveLimit(4, 1, 10)
    for i in range(10):
        limit.answered(i, i + 1, met=True)
    assert limit.limit == 4  # nothing was held back: nothing learnt
    # slow start: one more for each answer in time from a request held back on
    assert not limit.admits(4)
    for i in range(3):
        limit.answered(i, i + 1, met=True)
    assert limit.limit == 7
    # still binding while what is let in finds half the limit or more in flight
    assert limit.admits(4)
    limit.answered(0, 1, met=True)
    assert limit.limit == 8
    # a request let in with less than half the limit in flight: it no longer binds
    assert limit.admits(3)
    limit.answered(0, 1, met=True)
    assert limit.limit == 8
    assert not limit.admits(8)
    for _ in range(5):
        limit.answered(0, 1, met=True)
    assert limit.limit == 10  # the ceiling


def test_a_miss_now_and_then_is_noise_and_cuts_nothing() -> None:
    limit = AdaptiveLimit(10, 1, 100)
    for i in range(2000):
        limit.answered(i * MS, i * MS + 1, met=i % 50 != 0)  # 2% misses, under the tolerance
    assert limit.cuts == 0 and limit.limit == 10


def test_steady_misses_cut_it_by_the_backoff_once_per_round_trip() -> None:
    limit = AdaptiveLimit(20, 2, 100, backoff=0.5, tolerance=0.03, window=100)
    first = misses_until_cut(limit, 0)
    assert 2 <= first <= 5  # the share of misses crosses 3% after a few in a row
    assert limit.limit == 10
    cut_at = first * MS + 1
    # misses of requests admitted before that cut belong to the old limit's round trip
    for i in range(20):
        limit.answered(cut_at - 1, cut_at + i, met=False)
    assert limit.limit == 10 and limit.cuts == 1
    # one admitted after it cuts again at once (the share of misses is still high)
    limit.answered(cut_at + 1, cut_at + 2 * MS, met=False)
    assert limit.limit == 5 and limit.cuts == 2
    # and never below the floor
    for i in range(10):
        now = cut_at + (3 + i) * MS
        limit.answered(now, now + 1, met=False)
    assert limit.limit == 2


def test_after_a_cut_it_grows_by_one_per_limits_worth_of_answers() -> None:
    limit = AdaptiveLimit(10, 1, 100, backoff=0.5)
    misses_until_cut(limit, 0)
    assert limit.limit == 5
    assert not limit.admits(100)
    for _ in range(5):
        limit.answered(10**12, 10**12 + 1, met=True)
    assert 5.9 < limit.limit < 6.0  # one over the limit each: about one a limit's worth


@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 10**9), st.integers(0, 50)),
        max_size=300,
    ),
    st.integers(1, 8),
    st.integers(0, 8),
    st.integers(0, 32),
)
def test_it_stays_within_its_floor_and_ceiling(
    events: list[tuple[bool, int, int]], floor: int, above: int, headroom: int
) -> None:
    initial = floor + above
    limit = AdaptiveLimit(initial, floor, initial + headroom)
    now = 0
    for met, admitted_ns, inflight in events:
        now += 1000
        limit.admits(inflight)
        limit.answered(min(admitted_ns, now), now, met=met)
        assert floor <= limit.limit <= initial + headroom
        assert 0.0 <= limit.miss_share <= 1.0
