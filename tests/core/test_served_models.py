"""Workers that serve only some models: both policies place a model only on devices whose worker
serves it (``WorkerJoined.models``, ``WorkerModelsChanged``), and refuse what no connected worker
serves."""

from __future__ import annotations

import heapq

import pytest

from clockwork.core.actions import (
    Action,
    ActionResult,
    ActionStatus,
    EvictWeights,
    Infer,
    LoadWeights,
)
from clockwork.core.errors import InvalidInputError
from clockwork.core.events import (
    ActionFinished,
    DeviceInfo,
    ModelInfo,
    ModelRegistered,
    RequestArrived,
    WorkerJoined,
    WorkerLost,
    WorkerModelsChanged,
)
from clockwork.core.ids import DeviceId
from clockwork.core.policies import (
    ClockworkConfig,
    ClockworkPolicy,
    PolicyBase,
    ReactiveConfig,
    ReactivePolicy,
)
from clockwork.core.requests import InferRequest, Response, ResponseStatus

from support.kind_profile import KIND, profile
from support.units import MS

WA, WB = DeviceId("wa", 0), DeviceId("wb", 0)
POLICIES = ["clockwork", "reactive"]


def make(policy: str, exec_ms: dict[int, float] | None = None) -> PolicyBase:
    s: PolicyBase = (
        ClockworkPolicy(ClockworkConfig(result_margin_ns=0))
        if policy == "clockwork"
        else ReactivePolicy(ReactiveConfig())
    )
    for name in ("a", "b"):
        s.handle(ModelRegistered(ModelInfo(name, (profile(exec_ms=exec_ms),))), 0)
    return s


def join(
    s: PolicyBase,
    worker: str,
    models: tuple[str, ...] | None,
    devices: int = 1,
    resident: tuple[str, ...] = (),
    now: int = 0,
) -> None:
    s.handle(
        WorkerJoined(
            worker,
            tuple(DeviceInfo(DeviceId(worker, i), KIND, resident) for i in range(devices)),
            models,
        ),
        now,
    )


def req(rid: int, model: str, now: int, slo_ms: float = 100) -> RequestArrived:
    return RequestArrived(InferRequest(rid, model, now, now + int(slo_ms * MS)))


class Cluster:
    """Answers the policy's actions as workers serving ``served`` would (each action takes its
    expected duration; a model the worker does not serve: ``UNKNOWN_MODEL``); records them."""

    def __init__(self, s: PolicyBase, served: dict[str, frozenset[str] | None]) -> None:
        self.s = s
        self.served = served
        self.actions: list[Action] = []
        self.responses: list[Response] = []
        self.results: list[ActionResult] = []
        self._due: list[tuple[int, int, ActionResult]] = []

    def poll(self, now: int) -> int | None:
        """Poll, send the actions off; returns when the policy wants to be polled again."""
        out = self.s.poll(now)
        self.responses += out.responses
        for a in out.actions:
            self.actions.append(a)
            if type(a) is EvictWeights:
                continue
            assert isinstance(a, LoadWeights | Infer)
            models = self.served.get(a.device.worker)
            ok = models is None or a.model in models
            began = max(now, a.earliest_ns)
            end = began + a.expected_duration_ns if ok else began
            status = ActionStatus.SUCCESS if ok else ActionStatus.UNKNOWN_MODEL
            result = ActionResult(
                a.action_id, a.device, a.model, status, now, began, end, end - began
            )
            heapq.heappush(self._due, (end, a.action_id, result))
        return out.wake_at_ns

    def run(self, now: int, until: int) -> int:
        """Poll and answer until nothing is due and nothing waits (or ``until``)."""
        wake = self.poll(now)
        steps = 0
        while now < until:
            steps += 1
            # a policy that keeps re-planning what workers refuse would loop here for ever
            assert steps < 10_000, f"no progress: {self.actions[-3:]}"
            nxt = self._due[0][0] if self._due else None
            if nxt is None and (wake is None or not self.s.pending_requests()):
                break
            now = min(t for t in (nxt, wake) if t is not None)
            while self._due and self._due[0][0] <= now:
                _, _, result = heapq.heappop(self._due)
                self.results.append(result)
                self.s.handle(ActionFinished(result), now)
            wake = self.poll(now)
        return now

    def placed(self, model: str) -> set[DeviceId]:
        return {
            a.device
            for a in self.actions
            if isinstance(a, LoadWeights | Infer) and a.model == model
        }

    def statuses(self) -> dict[int, ResponseStatus]:
        return {r.request_id: r.status for r in self.responses}


@pytest.mark.parametrize("policy", POLICIES)
def test_loads_go_only_to_the_worker_that_serves_the_model(policy: str) -> None:
    s = make(policy)
    # wb joins first: every tie (load executors free, nothing running) would pick it
    join(s, "wb", ("b",))
    join(s, "wa", ("a", "b"))
    c = Cluster(s, {"wb": frozenset({"b"}), "wa": frozenset({"a", "b"})})
    for i in range(3):
        s.handle(req(i, "a", 0), 0)
    t = c.run(0, 1_000 * MS)
    assert c.statuses() == dict.fromkeys(range(3), ResponseStatus.SUCCESS)
    assert c.placed("a") == {WA}
    assert not any(r.status is ActionStatus.UNKNOWN_MODEL for r in c.results)
    # a model both serve still goes to the idle one
    s.handle(req(10, "b", t), t)
    c.run(t, 1_000 * MS)
    assert c.statuses()[10] is ResponseStatus.SUCCESS and c.placed("b") == {WB}


def test_a_hot_model_is_replicated_only_onto_devices_that_serve_it() -> None:
    s = make("clockwork", exec_ms={1: 2, 8: 8})
    join(s, "wb", ("b",), devices=2)
    join(s, "wa", ("a",), devices=2)
    c = Cluster(s, {"wb": frozenset({"b"}), "wa": frozenset({"a"})})
    for i in range(300):  # far more than one device can run before the deadlines
        s.handle(req(i, "a", 0), 0)
    c.run(0, 1_000 * MS)
    loads = {a.device for a in c.actions if isinstance(a, LoadWeights)}
    assert loads == {DeviceId("wa", 0), DeviceId("wa", 1)}
    assert c.placed("a") <= loads
    assert not any(a.device.worker == "wb" for a in c.actions)
    assert len(c.responses) == 300 and s.pending_requests() == 0


@pytest.mark.parametrize("policy", POLICIES)
def test_a_model_no_connected_worker_serves_is_refused_not_loaded(policy: str) -> None:
    s = make(policy)
    join(s, "wb", ("b",))
    c = Cluster(s, {"wb": frozenset({"b"})})
    s.handle(req(1, "a", 0), 0)
    s.handle(req(2, "b", 0), 0)
    c.run(0, 1_000 * MS)
    assert c.statuses() == {1: ResponseStatus.DEADLINE_INFEASIBLE, 2: ResponseStatus.SUCCESS}
    (refusal,) = [r for r in c.responses if r.request_id == 1]
    assert "serves" in refusal.detail and refusal.time_ns == 0
    assert c.placed("a") == set()


@pytest.mark.parametrize("policy", POLICIES)
def test_models_changed_makes_a_model_eligible_there(policy: str) -> None:
    s = make(policy)
    join(s, "wb", ("b",))
    served: dict[str, frozenset[str] | None] = {"wb": frozenset({"b"})}
    c = Cluster(s, served)
    s.handle(req(1, "a", 0), 0)
    c.run(0, 1_000 * MS)
    assert c.statuses() == {1: ResponseStatus.DEADLINE_INFEASIBLE}
    # the worker rescanned its repository and now has "a" too
    served["wb"] = frozenset({"a", "b"})
    t = 10 * MS
    s.handle(WorkerModelsChanged("wb", ("a", "b")), t)
    s.handle(req(2, "a", t), t)
    c.run(t, 1_000 * MS)
    assert c.statuses()[2] is ResponseStatus.SUCCESS and c.placed("a") == {WB}
    assert s.devices[WB].models == frozenset({"a", "b"})


@pytest.mark.parametrize("policy", POLICIES)
def test_models_changed_for_an_unknown_worker_is_invalid(policy: str) -> None:
    s = make(policy)
    join(s, "wb", ("b",))
    with pytest.raises(InvalidInputError, match="wa"):
        s.handle(WorkerModelsChanged("wa", ("a",)), 0)
    s.handle(WorkerLost("wb"), 0)
    with pytest.raises(InvalidInputError, match="wb"):
        s.handle(WorkerModelsChanged("wb", ("a",)), 0)


@pytest.mark.parametrize("policy", POLICIES)
def test_resident_model_the_worker_does_not_serve_is_evicted_at_join(policy: str) -> None:
    s = make(policy)
    join(s, "wb", ("b",), resident=("a", "b"))
    out = s.poll(0)
    assert [(a.model, a.device) for a in out.actions if isinstance(a, EvictWeights)] == [("a", WB)]
    view = s.devices[WB]
    assert list(view.resident) == ["b"] and view.free_pages == 6
    # and None still means every model: both stay
    s2 = make(policy)
    join(s2, "wb", None, resident=("a", "b"))
    assert not s2.poll(0).actions and set(s2.devices[WB].resident) == {"a", "b"}


@pytest.mark.parametrize("policy", POLICIES)
def test_models_changed_evicts_a_model_the_worker_no_longer_serves(policy: str) -> None:
    s = make(policy)
    join(s, "wb", ("a", "b"))
    c = Cluster(s, {"wb": None})
    s.handle(req(1, "a", 0), 0)
    t = c.run(0, 1_000 * MS)
    assert c.statuses() == {1: ResponseStatus.SUCCESS}
    s.handle(req(2, "b", t), t)
    (load,) = [a for a in s.poll(t).actions if isinstance(a, LoadWeights)]
    assert load.model == "b"
    # neither is served any more: "a" (loaded) is evicted now, "b" once its load ends
    s.handle(WorkerModelsChanged("wb", ()), t)
    out = s.poll(t)
    assert [a.model for a in out.actions if isinstance(a, EvictWeights)] == ["a"]
    assert s.devices[WB].free_pages == 10
    end = t + load.expected_duration_ns
    s.handle(
        ActionFinished(
            ActionResult(load.action_id, WB, "b", ActionStatus.SUCCESS, t, t, end, end - t)
        ),
        end,
    )
    out = s.poll(end)
    assert [a.model for a in out.actions if isinstance(a, EvictWeights)] == ["b"]
    assert not any(isinstance(a, LoadWeights) for a in out.actions)
    assert s.devices[WB].free_pages == 10


@pytest.mark.parametrize("policy", POLICIES)
def test_serving_worker_lost_no_load_elsewhere(policy: str) -> None:
    s = make(policy)
    join(s, "wb", ("b",))
    join(s, "wa", ("a",))
    served: dict[str, frozenset[str] | None] = {"wb": frozenset({"b"}), "wa": frozenset({"a"})}
    c = Cluster(s, served)
    s.handle(req(1, "a", 0), 0)
    c.poll(0)
    assert c.placed("a") == {WA}
    s.handle(WorkerLost("wa"), 1 * MS)
    c._due.clear()  # its results never come
    # another model's miss is not held up behind the one no device serves now
    s.handle(req(2, "b", 1 * MS), 1 * MS)
    c.run(1 * MS, 50 * MS)
    assert c.statuses()[2] is ResponseStatus.SUCCESS
    assert c.placed("a") == {WA}
    if policy == "clockwork":
        c.run(50 * MS, 1_000 * MS)
        # refused once its deadline could not be met, never sent to wb
        assert c.statuses()[1] is ResponseStatus.OVERLOADED
    else:
        # the reactive baseline refuses nothing it accepted: it waits for a worker serving it
        assert 1 not in c.statuses()
        join(s, "wa", ("a",), now=60 * MS)
        c.run(60 * MS, 1_000 * MS)
        assert c.statuses()[1] in (ResponseStatus.SUCCESS, ResponseStatus.LATE)
    assert c.placed("a") == {WA}
    assert not any(r.status is ActionStatus.UNKNOWN_MODEL for r in c.results)
