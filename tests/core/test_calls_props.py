"""Calls (``CallArrived``) under random arrivals, results and refusals, for both policies: every
sample is answered exactly once; once a sample of a call was refused, none of its others is sent
to a device (checked as each Infer is sent) or left queued after that poll."""

from __future__ import annotations

from collections import deque

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clockwork.core.actions import Action, ActionStatus, Infer, LoadWeights
from clockwork.core.cluster import DeviceView
from clockwork.core.events import CallArrived, RequestsWithdrawn
from clockwork.core.policies import ClockworkConfig, ClockworkPolicy, ReactiveConfig
from clockwork.core.policies.base import QUEUED, PendingRequest, PolicyBase
from clockwork.core.policies.reactive import ReactivePolicy
from clockwork.core.requests import InferRequest

from support.kind_profile import profile
from support.policy_by_hand import finish, join
from support.units import MS

OPS = st.one_of(
    # (model, samples, SLO in ms, ms between the samples' deadlines: a call the service makes
    # shares one deadline, the event allows each its own)
    st.tuples(
        st.just("call"),
        st.integers(0, 1),
        st.integers(1, 10),
        st.sampled_from([5, 10, 20, 50]),
        st.sampled_from([0, 0, 1, 3]),
    ),
    st.tuples(st.just("finish"), st.sampled_from([ActionStatus.SUCCESS, ActionStatus.TOO_LATE])),
    st.tuples(st.just("advance"), st.integers(1, 15)),
    # the caller of the n-th call so far goes away (as the service says when a wait is cancelled)
    st.tuples(st.just("withdraw"), st.integers(0, 20)),
)
MODELS = {"a": profile(), "b": profile(exec_ms={1: 1, 2: 2, 4: 3, 8: 5})}


class _SendChecked:
    """Checks every Infer as a policy sends it (see ``_check_sent``)."""

    def send(
        self,
        action: Action,
        view: DeviceView,
        now_ns: int,
        requests: list[PendingRequest] | None = None,
    ) -> None:
        _check_sent(action, requests)
        super().send(action, view, now_ns, requests)  # type: ignore[misc]


class _CheckedClockwork(_SendChecked, ClockworkPolicy):
    pass


class _CheckedReactive(_SendChecked, ReactivePolicy):
    pass


def _check_sent(action: Action, requests: list[PendingRequest] | None) -> None:
    """No Infer carries a sample of a call that failed before, in this poll or an earlier one."""
    for p in requests or ():
        assert p.call is None or p.call.failed is None, f"{action} sends {p.request}"


def build(policy: str, admission: bool, devices: int) -> PolicyBase:
    s: PolicyBase
    # (the compiled build's classes cannot be subclassed here: there the plain class, and the
    # test's other checks)
    if policy == "clockwork":
        config = ClockworkConfig(
            result_margin_ns=0, horizon_slo_fraction=0, backlog_admission=admission
        )
        try:
            s = _CheckedClockwork(config)
        except TypeError:
            s = ClockworkPolicy(config)
    else:
        reactive = ReactiveConfig(max_outstanding_per_device=1)
        try:
            s = _CheckedReactive(reactive)
        except TypeError:
            s = ReactivePolicy(reactive)
    join(s, MODELS, devices)
    return s


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=st.sampled_from(["clockwork", "reactive"]),
    admission=st.booleans(),
    devices=st.integers(1, 2),
    ops=st.lists(OPS, min_size=5, max_size=60),
)
def test_every_sample_is_answered_once_and_no_failed_call_is_sent_on(
    policy: str, admission: bool, devices: int, ops: list[tuple[object, ...]]
) -> None:
    s = build(policy, admission, devices)
    now = 0
    next_id = 0
    call_of: dict[int, int] = {}  # request id -> its call (the first id)
    members: dict[int, list[int]] = {}
    failed: set[int] = set()  # calls with a sample answered without a result
    answers: dict[int, list[str]] = {}
    in_flight: deque[tuple[Infer | LoadWeights, int]] = deque()  # (action, when sent)

    def poll() -> None:
        out = s.poll(now)
        for a in out.actions:
            if type(a) is Infer:
                # (within one poll a batch may have been sent before another sample failed)
                sent_on = {call_of[r] for r in a.request_ids} & failed
                assert not sent_on, f"{a} carries samples of calls {sent_on} refused before"
            if type(a) is Infer or type(a) is LoadWeights:
                in_flight.append((a, now))
        for r in out.responses:
            answers.setdefault(r.request_id, []).append(r.status.name)
            if not r.status.delivered_result:
                failed.add(call_of[r.request_id])
        # a failed call has nothing left queued: its samples are answered or already sent
        for first in failed:
            for i in members[first]:
                p = s.pending.get(i)
                assert p is None or p.state != QUEUED, f"sample {i} of failed call {first} queued"

    for op in ops:
        if op[0] == "call":
            _, m, n, slo, step = op
            model = sorted(MODELS)[int(m)]  # type: ignore[call-overload]
            ids = list(range(next_id, next_id + int(n)))  # type: ignore[call-overload]
            next_id += len(ids)
            for i in ids:
                call_of[i] = ids[0]
            members[ids[0]] = ids
            due = now + int(slo) * MS  # type: ignore[call-overload]
            gap = int(step) * MS  # type: ignore[call-overload]
            requests = tuple(InferRequest(i, model, now, due + k * gap) for k, i in enumerate(ids))
            s.handle(CallArrived(requests), now)
        elif op[0] == "finish" and in_flight:
            a, sent = in_flight.popleft()
            status = op[1] if type(a) is Infer else ActionStatus.SUCCESS
            assert isinstance(status, ActionStatus)
            began = max(sent, a.earliest_ns)
            ended = began + a.expected_duration_ns if status is ActionStatus.SUCCESS else began
            now = max(now, ended)
            s.handle(finish(a, began, ended, status), now)
        elif op[0] == "advance":
            now += int(op[1]) * MS  # type: ignore[call-overload]
        elif op[0] == "withdraw" and members:
            firsts = sorted(members)
            ids = members[firsts[int(op[1]) % len(firsts)]]  # type: ignore[call-overload]
            s.handle(RequestsWithdrawn(tuple(ids), "its caller stopped waiting"), now)
        poll()
    for _ in range(200):  # drain: every action runs, time passes every deadline
        if not in_flight and not s.pending_requests():
            break
        if in_flight:
            a, sent = in_flight.popleft()
            began = max(sent, a.earliest_ns, now)
            now = began + a.expected_duration_ns
            s.handle(finish(a, began, now), now)
        else:
            now += 100 * MS
        poll()
    assert s.pending_requests() == 0
    assert sorted(answers) == list(range(next_id))
    assert all(len(v) == 1 for v in answers.values()), answers
    for first, ids in members.items():
        statuses = [answers[i][0] for i in ids]
        if first not in failed:
            assert set(statuses) <= {"SUCCESS", "LATE"}
