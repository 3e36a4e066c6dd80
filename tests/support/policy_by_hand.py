"""The Clockwork policy driven by hand: one worker's devices, requests, results, the actions
of a kind (shared by the policy's hand-driven tests)."""

from __future__ import annotations

from clockwork.core.actions import ActionResult, ActionStatus, Infer, LoadWeights
from clockwork.core.events import (
    ActionFinished,
    DeviceInfo,
    ModelInfo,
    ModelRegistered,
    RequestArrived,
    WorkerJoined,
)
from clockwork.core.ids import DeviceId
from clockwork.core.policies import ClockworkConfig, ClockworkPolicy
from clockwork.core.policies.base import PolicyBase
from clockwork.core.profile import ModelProfile
from clockwork.core.requests import InferRequest
from clockwork.core.scheduler import SchedulerOutput

from support.kind_profile import KIND
from support.units import MS

D0 = DeviceId("w0", 0)
D1 = DeviceId("w0", 1)
D2 = DeviceId("w0", 2)


def make(
    models: dict[str, ModelProfile], devices: int = 1, config: ClockworkConfig | None = None
) -> ClockworkPolicy:
    # a fixed 10 ms horizon unless a test says otherwise: the tests of the paper's rules plan
    # with it at SLOs of a few ms
    s = ClockworkPolicy(config or ClockworkConfig(result_margin_ns=0, horizon_slo_fraction=0))
    join(s, models, devices)
    return s


def join(s: PolicyBase, models: dict[str, ModelProfile], devices: int = 1) -> None:
    """Register ``models`` with ``s`` and join one worker of ``devices`` devices."""
    for name, p in models.items():
        s.handle(ModelRegistered(ModelInfo(name, (p,))), 0)
    s.handle(
        WorkerJoined("w0", tuple(DeviceInfo(DeviceId("w0", i), KIND) for i in range(devices))), 0
    )


def backlog_config(admission: bool = True) -> ClockworkConfig:
    """``make``'s default config with the backlog rule (``backlog_admission``) on or off."""
    return ClockworkConfig(result_margin_ns=0, horizon_slo_fraction=0, backlog_admission=admission)


def req(rid: int, model: str, now: int, slo_ms: float = 100, prio: int = 0) -> RequestArrived:
    return RequestArrived(InferRequest(rid, model, now, now + int(slo_ms * MS), prio))


def finish(
    a: LoadWeights | Infer, began: int, ended: int, status: ActionStatus = ActionStatus.SUCCESS
) -> ActionFinished:
    return ActionFinished(
        ActionResult(a.action_id, a.device, a.model, status, began, began, ended, ended - began)
    )


def only(out: SchedulerOutput, kind: type) -> list:  # type: ignore[type-arg]
    return [a for a in out.actions if isinstance(a, kind)]


def warm(s: ClockworkPolicy, model: str, now: int = 0) -> int:
    """Load ``model`` on its first device by sending one request through; returns the time."""
    s.handle(req(10_000 + now, model, now), now)
    (load,) = only(s.poll(now), LoadWeights)
    t = now + load.expected_duration_ns
    s.handle(finish(load, now, t), t)
    (inf,) = only(s.poll(t), Infer)
    s.handle(finish(inf, t, t + inf.expected_duration_ns), t + inf.expected_duration_ns)
    end: int = t + inf.expected_duration_ns
    s.poll(end)
    return end
