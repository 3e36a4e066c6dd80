"""The timed loop's thread asks for a real-time policy where the host allows it; what it starts
afterwards runs at the normal one; where it is refused, ``auto`` says so and ``realtime`` is a
configuration error."""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Callable
from typing import TypeVar

import pytest

from clockwork.cli.loop_priority_args import apply_loop_priority
from clockwork.core.errors import ConfigurationError
from clockwork.service.loop_priority import (
    LoopPriority,
    LoopPriorityError,
    PriorityOutcome,
    raise_loop_priority,
)

from support.realtime import may_run_realtime, policy_of

T = TypeVar("T")


def _realtime_here() -> bool:
    return policy_of(threading.get_native_id()) == os.SCHED_FIFO


pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setscheduler"), reason="Linux only")


def _on_a_thread(fn: Callable[[], T]) -> T:
    """``fn()`` on a thread of its own (the test's thread keeps its policy)."""
    out: list[T] = []
    raised: list[BaseException] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as e:  # handed to the test
            raised.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if raised:
        raise raised[0]
    return out[0]


def test_normal_leaves_the_policy_alone() -> None:
    def run() -> tuple[PriorityOutcome, bool]:
        return raise_loop_priority(LoopPriority.NORMAL), _realtime_here()

    outcome, realtime = _on_a_thread(run)
    assert not outcome.realtime and not realtime
    assert "normal" in outcome.detail


def test_auto_runs_the_thread_real_time_where_allowed_and_its_children_normal() -> None:
    def run() -> tuple[PriorityOutcome, bool, int]:
        outcome = raise_loop_priority(LoopPriority.AUTO)
        child_policy: list[int] = []
        # a thread started afterwards (an executor's, the decode pool's) runs normal
        t = threading.Thread(
            target=lambda: child_policy.append(policy_of(threading.get_native_id()))
        )
        t.start()
        t.join()
        return outcome, _realtime_here(), child_policy[0]

    outcome, realtime, child = _on_a_thread(run)
    assert child == os.SCHED_OTHER
    if may_run_realtime():
        assert outcome.realtime and realtime
        assert "SCHED_FIFO" in outcome.detail
    else:
        assert not outcome.realtime and not realtime
        assert "not permitted" in outcome.detail


def _refuse(*_: object) -> None:
    raise PermissionError(1, "Operation not permitted")


def test_a_refusal_leaves_auto_normal_and_makes_realtime_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "sched_setscheduler", _refuse)
    outcome = raise_loop_priority(LoopPriority.AUTO)
    assert not outcome.realtime
    assert "SCHED_FIFO not permitted (Operation not permitted)" in outcome.detail
    with pytest.raises(LoopPriorityError, match="CAP_SYS_NICE"):
        raise_loop_priority(LoopPriority.REALTIME)
    # the command line's form: a configuration error that names the flag
    with pytest.raises(ConfigurationError, match="--loop-priority realtime"):
        apply_loop_priority(argparse.Namespace(loop_priority="realtime"))
    assert not apply_loop_priority(argparse.Namespace(loop_priority="auto")).realtime
