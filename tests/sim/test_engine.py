"""The event queue: time order, ties in scheduling order, and the events kept beside the heap
(the one aside, the in-order line) ordered exactly as if they had been pushed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clockwork.sim.engine import EventQueue


def test_ties_run_in_the_order_they_were_scheduled() -> None:
    q = EventQueue()
    q.push(5, 1, "a")
    q.put_aside(5, 0, "b")
    q.push_in_order(5, 2, "c")
    q.push(5, 2, "d")
    q.push_in_order(5, 2, "e")
    q.push(3, 3, "f")
    assert q.peek_ns() == 3
    assert [q.pop()[2] for _ in range(len(q))] == ["f", "a", "b", "c", "d", "e"]
    assert len(q) == 0 and q.peek_ns() is None


def test_bad_schedules_are_refused() -> None:
    q = EventQueue()
    q.put_aside(10, 0)
    with pytest.raises(ValueError, match="already aside"):
        q.put_aside(11, 0)
    q.push_in_order(20, 0)
    with pytest.raises(ValueError, match="before the last in order"):
        q.push_in_order(19, 0)
    assert q.peek_ns() == 10
    q.pop()
    with pytest.raises(ValueError, match="in the past"):
        q.put_aside(9, 0)
    with pytest.raises(ValueError, match="in the past"):
        q.push(9, 0)
    with pytest.raises(ValueError, match="in the past"):
        q.push_in_order(9, 0)


# each step: (delay after now, where: 0 heap / 1 aside / 2 in order, pops to do after it)
_steps = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2), st.integers(0, 2)), max_size=80)


@settings(max_examples=300, deadline=None)
@given(_steps)
def test_events_beside_the_heap_pop_where_pushed_ones_would(
    steps: list[tuple[int, int, int]],
) -> None:
    """The same operations on two queues, the second pushing every event: same pops."""
    a, b = EventQueue(), EventQueue()
    popped_a: list[tuple[int, int, object]] = []
    popped_b: list[tuple[int, int, object]] = []
    aside = False
    last_in_order = 0
    for label, (delay, where, pops) in enumerate(steps):
        when = a.now_ns + delay
        if where == 1 and not aside:
            a.put_aside(when, 1, label)
            aside = True
            b.push(when, 1, label)
        elif where == 2:
            when = max(when, last_in_order)
            last_in_order = when
            a.push_in_order(when, 2, label)
            b.push(when, 2, label)
        else:
            a.push(when, 0, label)
            b.push(when, 0, label)
        for _ in range(pops):
            if not len(a):
                break
            assert a.peek_ns() == b.peek_ns()
            popped_a.append(a.pop())
            popped_b.append(b.pop())
            if popped_a[-1][1] == 1:
                aside = False
        assert len(a) == len(b)
    while len(a):
        popped_a.append(a.pop())
        popped_b.append(b.pop())
    assert len(b) == 0
    assert popped_a == popped_b


def test_a_long_line_is_compacted_and_keeps_its_order() -> None:
    q = EventQueue()
    for i in range(3000):
        q.push_in_order(i, 2, i)
    out = [q.pop()[2] for _ in range(2500)]
    for i in range(3000, 3100):
        q.push_in_order(i, 2, i)
    out += [q.pop()[2] for _ in range(len(q))]
    assert out == list(range(3100))
    assert len(q._line) < 3100
