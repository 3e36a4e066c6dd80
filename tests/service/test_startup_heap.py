"""What startup built is exempt from the cyclic collector; what comes later is still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from clockwork.service.startup_heap import freeze_startup_heap


@pytest.fixture
def thawed() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the test run collects as before


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref[_Node]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_objects_alive_at_the_freeze_are_skipped_and_later_cycles_collected(
    thawed: None,
) -> None:
    before = _cycle()  # garbage already: the freeze's own collection frees it
    kept = [_Node() for _ in range(1000)]
    frozen = freeze_startup_heap()
    assert before() is None
    assert frozen >= len(kept)
    # a full collection no longer visits them: they are not in any generation
    assert all(not any(o is k for o in gc.get_objects(2)) for k in kept[:3])
    later = _cycle()
    gc.collect()
    assert later() is None
