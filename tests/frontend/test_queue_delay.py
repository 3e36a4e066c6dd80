"""The door's standing-queue test (``queue_delay``), sans-IO."""

from __future__ import annotations

import pytest

from clockwork.frontend.queue_delay import QueueDelayGate

MS = 1_000_000


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        QueueDelayGate(-1, 100 * MS)
    with pytest.raises(ValueError):
        QueueDelayGate(5 * MS, 0)


def test_a_burst_shorter_than_the_interval_is_admitted() -> None:
    gate = QueueDelayGate(5 * MS, 100 * MS)
    # every request of a 90 ms burst waited past the target
    assert all(gate.admit(20 * MS, t * MS) for t in range(0, 90, 3))
    assert gate.standing
    # one that waited less ends it
    assert gate.admit(1 * MS, 95 * MS) and not gate.standing
    assert gate.admit(20 * MS, 150 * MS)


def test_a_standing_queue_is_refused_until_a_request_comes_through_quickly() -> None:
    gate = QueueDelayGate(5 * MS, 100 * MS)
    assert gate.admit(6 * MS, 0)
    assert gate.admit(30 * MS, 99 * MS)
    # above the target for the whole interval: whoever waited that long is refused
    assert not gate.admit(6 * MS, 100 * MS)
    assert not gate.admit(50 * MS, 180 * MS)
    # the refusals drained the queue: a request that waited less is admitted, and so is the next
    assert gate.admit(2 * MS, 190 * MS)
    assert gate.admit(6 * MS, 195 * MS)


def test_a_target_of_zero_admits_everything() -> None:
    gate = QueueDelayGate(0, 1)
    assert all(gate.admit(10**9, t * 10**9) for t in range(10))
