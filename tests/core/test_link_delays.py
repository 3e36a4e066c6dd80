"""The links' delays the Clockwork policy plans with."""

import pytest

from clockwork.core.ids import DeviceId
from clockwork.core.policies.link_delays import DelayWindow, LinkDelays, StartGaps


def test_the_seed_until_measured_then_a_high_percentile_of_the_window() -> None:
    w = DelayWindow(500, window=100, percentile=99.0)
    assert w.value_ns == 500
    for _ in range(100):
        w.observe(100)
    assert w.value_ns == 100
    w.observe(900)  # one slow delivery in 100 is the p99's second-highest: not yet
    assert w.value_ns == 100
    w.observe(800)
    assert w.value_ns == 800
    for _ in range(100):  # both age out of the window
        w.observe(200)
    assert w.value_ns == 200


def test_negative_delays_count_as_zero() -> None:
    w = DelayWindow(500, window=4, percentile=99.0)
    for _ in range(4):
        w.observe(-30)
    assert w.value_ns == 0


def test_lead_and_margin_from_one_result() -> None:
    links = LinkDelays(0, 500, window=10)
    assert not links.measured
    links.observe(sent_ns=1_000, received_ns=1_100, ended_ns=5_000, now_ns=5_300)
    assert links.measured
    assert (links.lead.value_ns, links.margin.value_ns) == (100, 300)


@pytest.mark.parametrize("args", [(-1, 10, 99.0), (0, 0, 99.0), (0, 10, 0.0)])
def test_bad_settings_are_refused(args: tuple[int, int, float]) -> None:
    with pytest.raises(ValueError):
        DelayWindow(*args)


def test_a_start_gap_counts_only_for_an_infer_that_waited_behind_another() -> None:
    gaps = StartGaps(window=10)
    d0, d1 = DeviceId("w0", 0), DeviceId("w0", 1)
    gaps.observe(d0, received_ns=0, began_ns=100, ended_ns=1_000)  # the first: nothing before
    assert (gaps.typical.value_ns, gaps.tail.value_ns) == (0, 0)
    gaps.observe(d0, received_ns=500, began_ns=1_300, ended_ns=2_000)  # waited: 300 after
    assert (gaps.typical.value_ns, gaps.tail.value_ns) == (300, 300)
    # received once its device was idle: its start says nothing of the turnaround
    gaps.observe(d0, received_ns=9_000, began_ns=9_900, ended_ns=10_000)
    # another device's history is its own
    gaps.observe(d1, received_ns=9_500, began_ns=9_600, ended_ns=11_000)
    assert (gaps.typical.value_ns, gaps.tail.value_ns) == (300, 300)
    for began in (10_100, 11_200, 12_300):  # back to back, 100 after each end
        gaps.observe(d0, received_ns=began - 500, began_ns=began, ended_ns=began + 1_000)
    assert (gaps.typical.value_ns, gaps.tail.value_ns) == (100, 300)
    gaps.forget(d0)
    gaps.observe(d0, received_ns=0, began_ns=20_000, ended_ns=21_000)  # forgotten: no "before"
    assert (gaps.typical.value_ns, gaps.tail.value_ns) == (100, 300)
