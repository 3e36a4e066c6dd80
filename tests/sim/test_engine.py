"""The event queue: time order, ties in scheduling order, and the event kept aside the heap
ordered exactly as if it had been pushed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clockwork.sim.engine import EventQueue


def test_ties_run_in_the_order_they_were_scheduled() -> None:
    q = EventQueue()
    q.push(5, 1, "a")
    q.put_aside(5, 0, "b")
    q.push(5, 2, "c")
    q.push(3, 3, "d")
    assert [q.pop()[2] for _ in range(len(q))] == ["d", "a", "b", "c"]
    assert len(q) == 0 and q.peek_ns() is None


def test_only_one_event_aside_and_never_in_the_past() -> None:
    q = EventQueue()
    q.put_aside(10, 0)
    with pytest.raises(ValueError, match="already aside"):
        q.put_aside(11, 0)
    assert q.peek_ns() == 10
    q.pop()
    with pytest.raises(ValueError, match="in the past"):
        q.put_aside(9, 0)
    with pytest.raises(ValueError, match="in the past"):
        q.push(9, 0)


# each step: (delay after now, True: the stream's next event goes aside / False: an ordinary
# push, pops to do after it)
_steps = st.lists(st.tuples(st.integers(0, 5), st.booleans(), st.integers(0, 2)), max_size=60)


@settings(max_examples=200, deadline=None)
@given(_steps)
def test_the_aside_event_pops_where_a_pushed_one_would(steps: list[tuple[int, bool, int]]
                                                       ) -> None:
    """The same operations on two queues, the second pushing every event: same pops."""
    a, b = EventQueue(), EventQueue()
    popped_a: list[tuple[int, int, object]] = []
    popped_b: list[tuple[int, int, object]] = []
    aside = False
    for label, (delay, stream, pops) in enumerate(steps):
        when = a.now_ns + delay
        if stream and not aside:
            a.put_aside(when, 0, label)
            aside = True
            b.push(when, 0, label)
        else:
            a.push(when, 1, label)
            b.push(when, 1, label)
        for _ in range(pops):
            if not len(a):
                break
            assert a.peek_ns() == b.peek_ns()
            popped_a.append(a.pop())
            popped_b.append(b.pop())
            if popped_a[-1][1] == 0:
                aside = False
        assert len(a) == len(b)
    while len(a):
        popped_a.append(a.pop())
        popped_b.append(b.pop())
    assert len(b) == 0
    assert popped_a == popped_b
