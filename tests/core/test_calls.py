"""The samples of one call (``CallArrived``): served together, or, once one is refused, the
others still queued are answered WITHDRAWN before anything more is planned."""

from __future__ import annotations

import pytest

from clockwork.core.actions import ActionStatus, Infer, LoadWeights
from clockwork.core.errors import InvalidInputError
from clockwork.core.events import CallArrived, ModelInfo, ModelRegistered
from clockwork.core.requests import InferRequest, ResponseStatus

from support.kind_profile import profile
from support.policy_by_hand import backlog_config, finish, make, only, warm
from support.units import MS

ADMIT = backlog_config()


def call(first_id: int, n: int, model: str, now: int, slo_ms: float) -> CallArrived:
    return CallArrived(
        tuple(InferRequest(first_id + i, model, now, now + int(slo_ms * MS)) for i in range(n))
    )


def test_a_call_is_served_as_its_samples_would_be() -> None:
    s = make({"a": profile()}, config=ADMIT)
    t = warm(s, "a")
    s.handle(call(0, 8, "a", t, 20), t)
    (inf,) = only(s.poll(t), Infer)
    assert sorted(inf.request_ids) == list(range(8)) and inf.batch_size == 8
    end = t + inf.expected_duration_ns
    s.handle(finish(inf, t, end), end)
    assert [r.status for r in s.poll(end).responses] == [ResponseStatus.SUCCESS] * 8


def test_a_sample_refused_at_arrival_refuses_the_call_and_nothing_runs() -> None:
    # room for 25 by the deadline (test_clockwork_policy): the 26th sample is refused, the 25
    # before it were taken and are withdrawn, the 4 after it are never taken
    s = make({"a": profile()}, config=ADMIT)
    t = warm(s, "a")
    s.handle(call(0, 30, "a", t, 20), t)
    out = s.poll(t)
    assert not only(out, Infer)
    by_id = {r.request_id: r for r in out.responses}
    assert len(by_id) == 30 and s.pending_requests() == 0
    assert by_id[25].status is ResponseStatus.OVERLOADED
    withdrawn = [i for i, r in by_id.items() if r.status is ResponseStatus.WITHDRAWN]
    assert sorted(withdrawn) == [i for i in range(30) if i != 25]
    assert by_id[0].detail == "another sample of its call was refused (OVERLOADED)"


def test_a_call_ended_by_a_requeue_leaves_none_of_its_samples_planned() -> None:
    # as test_requests_an_infer_did_not_run_are_admitted_again_by_the_backlog_rule, one call:
    # the 5th of the 8 requeued cannot be served, so the call has failed, and the other 7 are
    # withdrawn before the poll could plan them (the 8 sent on behind run and are answered)
    s = make({"a": profile()}, config=ADMIT)
    t = warm(s, "a")
    s.handle(call(0, 16, "a", t, 14), t)
    first, second = sorted(only(s.poll(t), Infer), key=lambda a: a.earliest_ns)
    s.handle(finish(first, t + 3 * MS, t + 3 * MS, ActionStatus.TOO_LATE), t + 3 * MS)
    out = s.poll(t + 3 * MS)
    assert not only(out, Infer)
    # the first the backlog cannot serve ends the call: the rest are not queued again
    statuses = sorted(r.status.name for r in out.responses)
    assert statuses == ["OVERLOADED"] + ["WITHDRAWN"] * 7
    assert {r.request_id for r in out.responses} == set(first.request_ids)
    s.handle(finish(second, t + 3 * MS, t + 9 * MS), t + 9 * MS)
    assert [r.status for r in s.poll(t + 9 * MS).responses] == [ResponseStatus.SUCCESS] * 8
    assert s.pending_requests() == 0


def test_samples_alone_are_not_withdrawn_with_others() -> None:
    # the same requeue with 16 requests of their own: the 4 that fit are planned again
    s = make({"a": profile()}, config=ADMIT)
    t = warm(s, "a")
    for i in range(16):
        s.handle(call(i, 1, "a", t, 14), t)
    first, _ = sorted(only(s.poll(t), Infer), key=lambda a: a.earliest_ns)
    s.handle(finish(first, t + 3 * MS, t + 3 * MS, ActionStatus.TOO_LATE), t + 3 * MS)
    out = s.poll(t + 3 * MS)
    assert [r.status for r in out.responses] == [ResponseStatus.OVERLOADED] * 4
    (again,) = only(out, Infer)
    assert again.batch_size == 4


@pytest.mark.parametrize("ids", [(1, 1), (7, 8)])
def test_a_call_with_a_repeated_or_pending_id_is_refused_whole(ids: tuple[int, int]) -> None:
    s = make({"a": profile()}, config=ADMIT)
    t = warm(s, "a")
    s.handle(call(7, 1, "a", t, 100), t)  # id 7 pending
    before = s.pending_requests()
    bad = CallArrived(tuple(InferRequest(i, "a", t, t + 100 * MS) for i in ids))
    with pytest.raises(InvalidInputError):
        s.handle(bad, t)
    assert s.pending_requests() == before


def test_a_call_of_an_unknown_model_is_answered_once_per_sample() -> None:
    s = make({"a": profile()}, config=ADMIT)
    s.handle(ModelRegistered(ModelInfo("b", (profile(),))), 0)
    s.handle(call(0, 3, "nope", 0, 100), 0)
    out = s.poll(0)
    assert [r.status for r in out.responses] == [
        ResponseStatus.MODEL_NOT_FOUND,
        ResponseStatus.WITHDRAWN,
        ResponseStatus.WITHDRAWN,
    ]
    assert s.pending_requests() == 0


@pytest.mark.parametrize("settled", [False, True])
def test_a_call_on_a_cold_model_loads_it(settled: bool) -> None:
    # after a poll that planned everything, the first sample makes the model a load candidate:
    # the samples after it must not find the scheduler still settled
    s = make({"a": profile()}, config=ADMIT)
    if settled:
        assert not s.poll(0).actions
    s.handle(call(0, 3, "a", 0, 100), 0)
    (load,) = only(s.poll(0), LoadWeights)
    s.handle(finish(load, 0, load.expected_duration_ns), load.expected_duration_ns)
    (inf,) = only(s.poll(load.expected_duration_ns), Infer)
    assert sorted(inf.request_ids) == [0, 1, 2]


def test_samples_back_from_an_infer_that_did_not_run_are_withdrawn_if_their_call_failed() -> None:
    # a call of 5 due in 5 ms: 4 run in one batch (4 ms), the 5th expires at 3 ms, so the call
    # has failed with 4 samples in flight. Their Infer is then refused too late: they are
    # answered WITHDRAWN, not queued again for a call nobody waits for any more
    s = make({"a": profile()})
    t = warm(s, "a")
    s.handle(call(0, 5, "a", t, 5), t)
    (inf,) = only(s.poll(t), Infer)
    assert inf.request_ids == (0, 1, 2, 3)
    (expired,) = s.poll(t + 3 * MS + 1).responses
    assert (expired.request_id, expired.status) == (4, ResponseStatus.OVERLOADED)
    s.handle(finish(inf, t + 4 * MS, t + 4 * MS, ActionStatus.TOO_LATE), t + 4 * MS)
    back = s.poll(t + 4 * MS)
    assert not only(back, Infer)
    assert sorted(r.request_id for r in back.responses) == [0, 1, 2, 3]
    assert {r.status for r in back.responses} == {ResponseStatus.WITHDRAWN}
    assert s.pending_requests() == 0
