"""ClockSync: NTP-style offset from the minimum one-way deltas each way, over a sliding window."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clockwork.core.clock_sync import ClockNotSyncedError, ClockSync

from support.units import MS, S


class Link:
    """Two peers whose clocks differ by ``offset_ns`` (remote - local), exchanging messages with
    one-way delays ``base + jitter`` and each reporting its minimum delta to the other."""

    def __init__(
        self,
        offset_ns: int,
        rnd: random.Random,
        window_ns: int | None = 10 * S,
        base_out_ns: int = 50_000,
        base_in_ns: int = 50_000,
        jitter_ns: int = 2 * MS,
    ) -> None:
        self.offset_ns = offset_ns
        self.rnd = rnd
        self.local = ClockSync(window_ns)
        self.remote = ClockSync(window_ns)
        self.base_out, self.base_in, self.jitter = base_out_ns, base_in_ns, jitter_ns
        self.min_out = self.min_in = 10**18  # least delays actually drawn
        self.t = 0  # true time = local clock

    def _delay(self, base: int) -> int:
        return base + int(self.rnd.expovariate(1 / self.jitter))

    def step(self, dt_ns: int = MS) -> None:
        self.t += dt_ns
        # local -> remote
        d = self._delay(self.base_out)
        self.min_out = min(self.min_out, d)
        self.remote.observe_received(self.t, self.t + d + self.offset_ns)
        # remote -> local, carrying the remote's minimum (as Ping/Pong.min_delta_ns)
        d = self._delay(self.base_in)
        self.min_in = min(self.min_in, d)
        report = self.remote.local_min_delta_ns
        assert report is not None
        self.local.observe_received(self.t + self.offset_ns, self.t + d)
        self.local.observe_peer_report(report, self.t + d)


@pytest.mark.parametrize("offset_ns", [0, 3 * S, -3 * S, 7 * S + 123_457, -(10**12) - 1])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_offset_with_skew_and_jitter(offset_ns: int, seed: int) -> None:
    link = Link(offset_ns, random.Random(seed))
    for _ in range(500):
        link.step()
    sync = link.local
    # the estimate is off by at most half the difference of the least delays each way
    bound = abs(link.min_out - link.min_in) // 2 + 1
    assert abs(sync.offset_ns - offset_ns) <= bound
    assert abs(sync.offset_ns - offset_ns) <= sync.error_bound_ns
    assert sync.rtt_ns == link.min_out + link.min_in
    # and the other side sees the opposite offset (given a report from us)
    assert link.local.local_min_delta_ns is not None
    link.remote.observe_peer_report(link.local.local_min_delta_ns, link.t + offset_ns)
    assert abs(link.remote.offset_ns + offset_ns) <= bound


def test_asymmetric_delays_bound_the_error() -> None:
    # no jitter at all: the error is exactly half the asymmetry of the one-way delays
    link = Link(5 * S, random.Random(0), base_out_ns=400_000, base_in_ns=100_000, jitter_ns=1)
    for _ in range(50):
        link.step()
    err = link.local.offset_ns - 5 * S
    assert abs(err - (link.min_out - link.min_in) // 2) <= 1
    assert 140_000 <= err <= 160_000


@settings(max_examples=200)
@given(
    offset=st.integers(-(10**13), 10**13),
    seed=st.integers(0, 2**32),
    base_out=st.integers(0, 5 * MS),
    base_in=st.integers(0, 5 * MS),
)
def test_offset_bound_holds_for_any_skew(
    offset: int, seed: int, base_out: int, base_in: int
) -> None:
    link = Link(offset, random.Random(seed), base_out_ns=base_out, base_in_ns=base_in)
    for _ in range(30):
        link.step()
    assert abs(link.local.offset_ns - offset) <= abs(link.min_out - link.min_in) // 2 + 1


@given(offset=st.integers(-(10**13), 10**13), t=st.integers(-(2**62), 2**62))
def test_conversions_round_trip(offset: int, t: int) -> None:
    sync = ClockSync()
    # exact deltas with no delay: offset is known exactly
    sync.observe_received(remote_sent_ns=1000 + offset, local_recv_ns=1000)
    sync.observe_peer_report(offset, 1000)
    assert sync.offset_ns == offset
    assert sync.to_local(sync.to_remote(t)) == t
    assert sync.to_remote(sync.to_local(t)) == t
    assert sync.to_remote(t) == t + offset
    assert sync.rtt_ns == 0


def test_not_ready_until_both_directions_known() -> None:
    sync = ClockSync()
    assert not sync.ready
    with pytest.raises(ClockNotSyncedError, match="no message received"):
        _ = sync.offset_ns
    sync.observe_received(5, 10)
    with pytest.raises(ClockNotSyncedError, match="no report from the peer"):
        sync.to_local(0)
    sync.observe_peer_report(7, 11)
    assert sync.ready
    assert sync.offset_ns == 1  # (7 - 5) // 2
    assert sync.samples == 1


def test_window_expiry_follows_a_step_of_the_remote_clock() -> None:
    sync = ClockSync(window_ns=1 * S)
    t = 0
    # 0.5 s with the remote clock 2 s ahead; one lucky fast message among slow ones
    sync.observe_received(t + 2 * S, t + 10_000)
    for _ in range(50):
        t += 10 * MS
        sync.observe_received(t + 2 * S, t + 500_000)
    sync.observe_peer_report(2 * S + 10_000, t)
    assert abs(sync.offset_ns - 2 * S) <= 10_000
    assert sync.local_min_delta_ns == 10_000 - 2 * S
    # now the remote clock is stepped back by 1 ms: the fast old sample keeps the minimum ...
    for _ in range(40):  # 0.4 s more: the fast sample is 0.9 s old
        t += 10 * MS
        sync.observe_received(t + 2 * S - MS, t + 20_000)
    assert sync.local_min_delta_ns == 10_000 - 2 * S
    # ... until it falls out of the window; then the new offset shows
    for _ in range(100):
        t += 10 * MS
        sync.observe_received(t + 2 * S - MS, t + 20_000)
    assert sync.local_min_delta_ns == 20_000 - 2 * S + MS
    sync.observe_peer_report(2 * S - MS + 20_000, t)
    assert sync.offset_ns == 2 * S - MS


def test_window_tracks_a_drifting_clock() -> None:
    rate = -100e-6  # the remote clock loses 100 us per second: deltas grow
    rnd = random.Random(4)
    window = ClockSync(window_ns=1 * S)
    forever = ClockSync(window_ns=None)
    t = 0
    for _ in range(2000):  # 20 s
        t += 10 * MS
        remote_now = t + int(t * rate)
        delay = 30_000 + int(rnd.expovariate(1 / 200_000))
        for sync in (window, forever):
            sync.observe_received(remote_now - delay, t)
            sync.observe_peer_report(int(t * rate) + 30_000, t)
    true_offset = int(t * rate)  # 2 ms by now
    assert abs(window.offset_ns - true_offset) <= 150_000  # at most a window's drift behind
    assert abs(forever.offset_ns - true_offset) > 500_000  # stuck near the start


def test_count_window() -> None:
    sync = ClockSync(window_ns=None, max_samples=3)
    for i, delta in enumerate([5, 9, 9, 9, 7, 8]):
        sync.observe_received(0, delta)
        if i == 2:
            assert sync.local_min_delta_ns == 5
    assert sync.local_min_delta_ns == 7  # 5 fell out after three newer samples


def test_newest_sample_is_kept_when_idle() -> None:
    sync = ClockSync(window_ns=1 * S)
    sync.observe_received(0, 100)
    sync.observe_received(0, 300)
    sync.advance(100 * S)
    assert sync.local_min_delta_ns == 300


@given(
    st.lists(st.tuples(st.integers(0, 10 * MS), st.integers(-S, S)), min_size=1, max_size=60),
    st.integers(1, 50 * MS),
)
def test_sliding_minimum_matches_brute_force(steps: list[tuple[int, int]], window: int) -> None:
    sync = ClockSync(window_ns=window)
    t = 0
    seen: list[tuple[int, int]] = []
    for dt, delta in steps:
        t += dt
        sync.observe_received(t - delta, t)
        seen.append((t, delta))
        in_window = [d for (ts, d) in seen if ts >= t - window]  # the newest always is
        assert sync.local_min_delta_ns == min(in_window)


def test_bad_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="window_ns"):
        ClockSync(window_ns=0)
    with pytest.raises(ValueError, match="max_samples"):
        ClockSync(max_samples=0)
