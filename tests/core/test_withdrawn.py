"""Requests withdrawn by their caller (``RequestsWithdrawn``), in both policies: those still
queued are answered WITHDRAWN at once and never run; the others are left as they are."""

from __future__ import annotations

import pytest

from clockwork.core.actions import ActionResult, ActionStatus, Infer, LoadWeights
from clockwork.core.events import (
    ActionFinished,
    DeviceInfo,
    ModelInfo,
    ModelRegistered,
    RequestArrived,
    RequestsWithdrawn,
    WorkerJoined,
)
from clockwork.core.ids import DeviceId
from clockwork.core.policies import ClockworkConfig, ClockworkPolicy, ReactiveConfig
from clockwork.core.policies.base import PolicyBase
from clockwork.core.policies.reactive import ReactivePolicy
from clockwork.core.requests import InferRequest, ResponseStatus
from clockwork.core.scheduler import SchedulerOutput

from support.kind_profile import KIND, profile
from support.units import MS

# batch 1 takes 20 ms: behind one running request, the next ones wait past a 10 ms horizon
SLOW = profile(exec_ms={1: 20, 2: 30, 4: 40, 8: 60})


def make(policy: str) -> PolicyBase:
    s: PolicyBase
    if policy == "clockwork":
        s = ClockworkPolicy(ClockworkConfig(result_margin_ns=0, horizon_slo_fraction=0))
    else:
        # one Infer outstanding: the others wait in the policy's queue
        s = ReactivePolicy(ReactiveConfig(max_outstanding_per_device=1))
    s.handle(ModelRegistered(ModelInfo("a", (SLOW,))), 0)
    s.handle(WorkerJoined("w0", (DeviceInfo(DeviceId("w0", 0), KIND),)), 0)
    return s


def req(rid: int, now: int) -> RequestArrived:
    return RequestArrived(InferRequest(rid, "a", now, now + 500 * MS))


def infers(out: SchedulerOutput) -> list[Infer]:
    return [a for a in out.actions if type(a) is Infer]


def run(s: PolicyBase, a: Infer | LoadWeights, began: int) -> int:
    ended = began + a.expected_duration_ns
    s.handle(
        ActionFinished(
            ActionResult(
                a.action_id,
                a.device,
                a.model,
                ActionStatus.SUCCESS,
                began,
                began,
                ended,
                ended - began,
            )
        ),
        ended,
    )
    return ended


def warm(s: PolicyBase) -> int:
    s.handle(req(1000, 0), 0)
    (load,) = [a for a in s.poll(0).actions if type(a) is LoadWeights]
    t = run(s, load, 0)
    (inf,) = infers(s.poll(t))
    t = run(s, inf, t)
    s.poll(t)
    return t


@pytest.mark.parametrize("policy", ["clockwork", "reactive"])
def test_withdrawn_queued_requests_are_answered_at_once_and_never_run(policy: str) -> None:
    s = make(policy)
    t = warm(s)
    s.handle(req(0, t), t)
    (first,) = infers(s.poll(t))
    assert first.request_ids == (0,)
    for rid in (1, 2, 3):
        s.handle(req(rid, t), t)
    assert not infers(s.poll(t))  # queued behind request 0
    # 0 runs already and 999 was never seen: both passed over
    s.handle(RequestsWithdrawn((1, 0, 2, 999), "another sample of its call was refused"), t)
    out = s.poll(t)
    assert sorted((r.request_id, r.status) for r in out.responses) == [
        (1, ResponseStatus.WITHDRAWN),
        (2, ResponseStatus.WITHDRAWN),
    ]
    assert {r.detail for r in out.responses} == {"another sample of its call was refused"}
    assert s.pending_requests() == 2  # 0 running, 3 queued
    # withdrawing again, or after the answer, changes nothing
    s.handle(RequestsWithdrawn((1, 2), "again"), t)
    assert not s.poll(t).responses
    t = run(s, first, t)
    out = s.poll(t)
    (ok,) = out.responses
    assert (ok.request_id, ok.status) == (0, ResponseStatus.SUCCESS)
    # the request left behind the withdrawn ones is still planned, with no other arrival
    (second,) = infers(out)
    assert second.request_ids == (3,)
    t = run(s, second, max(t, second.earliest_ns))
    (last,) = s.poll(t).responses
    assert (last.request_id, last.status) == (3, ResponseStatus.SUCCESS)
    assert s.pending_requests() == 0


@pytest.mark.parametrize("policy", ["clockwork", "reactive"])
def test_a_withdrawn_request_in_flight_is_answered_by_its_result(policy: str) -> None:
    s = make(policy)
    t = warm(s)
    s.handle(req(0, t), t)
    (inf,) = infers(s.poll(t))
    s.handle(RequestsWithdrawn((0,), "its caller stopped waiting"), t)
    assert not s.poll(t).responses
    t = run(s, inf, t)
    (r,) = s.poll(t).responses
    assert (r.request_id, r.status) == (0, ResponseStatus.SUCCESS)


def test_withdrawing_the_head_leaves_the_rest_of_the_queue_a_batch() -> None:
    s = make("clockwork")
    t = warm(s)
    s.handle(req(0, t), t)
    (first,) = infers(s.poll(t))
    for rid in range(1, 6):
        s.handle(req(rid, t), t)
    s.poll(t)
    s.handle(RequestsWithdrawn((1,), "its caller stopped waiting"), t)
    (withdrawn,) = s.poll(t).responses
    assert withdrawn.request_id == 1
    t = run(s, first, t)
    (batch,) = infers(s.poll(t))
    assert batch.request_ids == (2, 3, 4, 5) and batch.batch_size == 4
