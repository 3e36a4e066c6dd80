"""Per-device estimates (``EstimatorConfig.per_device_estimates``): two devices of one kind, one
of which runs 3x slower than the other, driven by hand through the Clockwork policy."""

from __future__ import annotations

import pytest

from clockwork.core.actions import ActionResult, ActionStatus, Infer
from clockwork.core.estimator import EstimatorConfig
from clockwork.core.events import (
    ActionFinished,
    DeviceInfo,
    ModelInfo,
    ModelRegistered,
    ModelRemoved,
    RequestArrived,
    WorkerJoined,
    WorkerLost,
    WorkerModelsChanged,
)
from clockwork.core.ids import DeviceId
from clockwork.core.policies import ClockworkConfig, ClockworkPolicy
from clockwork.core.profile import ModelProfile
from clockwork.core.requests import InferRequest, ResponseStatus

from support.kind_profile import KIND
from support.kind_profile import profile as kind_profile
from support.units import MS

FAST = DeviceId("fast", 0)
SLOW = DeviceId("slow", 0)
# batch 1 only: two requests at once run one on each device
SEED_NS = 10 * MS
SLOWDOWN = 3


def profile(exec_ns: int = SEED_NS) -> ModelProfile:
    return kind_profile(exec_ms={1: exec_ns / MS})


def make(per_device: bool) -> ClockworkPolicy:
    config = ClockworkConfig(
        result_margin_ns=0,
        horizon_slo_fraction=0,
        learn_link_delays=False,
        # nothing but the estimates decides: no tries on an idle device, no probes
        long_shot_chance=0.0,
        probe_interval_ns=0,
        estimator=EstimatorConfig(per_device_estimates=per_device),
    )
    s = ClockworkPolicy(config)
    s.handle(ModelRegistered(ModelInfo("m", (profile(),))), 0)
    join(s, FAST, 0)
    join(s, SLOW, 0)
    return s


def join(s: ClockworkPolicy, device: DeviceId, now_ns: int) -> None:
    s.handle(WorkerJoined(device.worker, (DeviceInfo(device, KIND, ("m",)),)), now_ns)


def run_slower_on_slow(s: ClockworkPolicy, rounds: int = 5) -> int:
    """``rounds`` times two requests at once, one run on each device; the slow device's results
    report 3x the fast one's duration. Returns the time after the last result."""
    t = 0
    rid = 0
    for _ in range(rounds):
        for _ in range(2):
            rid += 1
            s.handle(RequestArrived(InferRequest(rid, "m", t, t + 500 * MS, 0)), t)
        infers = [a for a in s.poll(t).actions if isinstance(a, Infer)]
        assert sorted(a.device for a in infers) == sorted([FAST, SLOW])
        end = t
        for a in infers:
            took = SEED_NS * (SLOWDOWN if a.device == SLOW else 1)
            end = max(end, t + took)
            s.handle(
                ActionFinished(
                    ActionResult(a.action_id, a.device, "m", ActionStatus.SUCCESS, t, t, t + took)
                ),
                t + took,
            )
        t = end + 10 * MS
        assert all(r.status is ResponseStatus.SUCCESS for r in s.poll(t).responses)
    return t


def batch1_ns(s: ClockworkPolicy, device: DeviceId, model: str = "m") -> int:
    return s.estimates[model][s.devices[device].estimates_key].exec_ns(1)


def test_each_device_keeps_its_own_estimate() -> None:
    s = make(per_device=True)
    run_slower_on_slow(s)
    assert s.devices[FAST].estimates_key != s.devices[SLOW].estimates_key
    # the slow device's runs did not raise the fast one's estimate
    assert batch1_ns(s, FAST) == SEED_NS
    assert batch1_ns(s, SLOW) == SLOWDOWN * SEED_NS
    assert sorted(e.exec_ns(1) for e in s._queues["m"].ests) == [SEED_NS, SLOWDOWN * SEED_NS]


def test_shared_estimate_without_the_switch() -> None:
    s = make(per_device=False)
    run_slower_on_slow(s)
    assert s.devices[FAST].estimates_key == s.devices[SLOW].estimates_key == KIND.name
    assert list(s.estimates["m"]) == [KIND.name]
    # the paper's p99 of 10 is their maximum: the slow device's runs
    assert batch1_ns(s, FAST) == SLOWDOWN * SEED_NS


@pytest.mark.parametrize("per_device", [True, False])
def test_a_deadline_only_the_fast_device_meets(per_device: bool) -> None:
    s = make(per_device)
    t = run_slower_on_slow(s)
    # 20 ms: the fast device's 10 ms fit, the slow one's 30 ms do not
    s.handle(RequestArrived(InferRequest(100, "m", t, t + 2 * SEED_NS, 0)), t)
    out = s.poll(t)
    infers = [a for a in out.actions if isinstance(a, Infer)]
    if per_device:
        assert [(a.device, a.request_ids) for a in infers] == [(FAST, (100,))]
        assert not out.responses
    else:  # one estimate for both: the slow device's runs refuse it
        assert not infers
        assert [r.status for r in out.responses] == [ResponseStatus.DEADLINE_INFEASIBLE]


def test_a_removed_device_loses_its_estimates_and_rejoins_at_the_prior() -> None:
    s = make(per_device=True)
    t = run_slower_on_slow(s)
    key = s.devices[SLOW].estimates_key
    s.handle(WorkerLost(SLOW.worker), t)
    assert key not in s.estimates["m"]
    assert [e.exec_ns(1) for e in s._queues["m"].ests] == [SEED_NS]
    join(s, SLOW, t)
    again = s.estimates["m"][s.devices[SLOW].estimates_key]
    assert again.exec_ns(1) == SEED_NS
    assert again.exec[1].last_measured_ns == -1  # nothing of what the one that left measured
    assert len(s._queues["m"].ests) == 2


def test_a_worker_joining_again_under_its_name_starts_from_the_prior() -> None:
    s = make(per_device=True)
    t = run_slower_on_slow(s)
    join(s, SLOW, t)  # the same worker again, without a WorkerLost first
    assert batch1_ns(s, SLOW) == SEED_NS
    assert batch1_ns(s, FAST) == SEED_NS


def test_only_devices_serving_the_model_judge_its_requests() -> None:
    s = make(per_device=True)
    t = run_slower_on_slow(s)
    s.handle(WorkerModelsChanged(FAST.worker, ()), t)  # the fast worker no longer serves m
    assert [e.exec_ns(1) for e in s._queues["m"].ests] == [SLOWDOWN * SEED_NS]
    s.handle(RequestArrived(InferRequest(100, "m", t, t + 2 * SEED_NS, 0)), t)
    out = s.poll(t)
    assert [r.status for r in out.responses] == [ResponseStatus.DEADLINE_INFEASIBLE]
    # serving it again, the device keeps what it measured
    s.handle(WorkerModelsChanged(FAST.worker, ("m",)), t)
    assert sorted(e.exec_ns(1) for e in s._queues["m"].ests) == [SEED_NS, SLOWDOWN * SEED_NS]
    assert s.estimates["m"][s.devices[FAST].estimates_key].exec[1].last_measured_ns > 0


def test_a_model_registered_after_the_devices_gets_their_estimates() -> None:
    s = make(per_device=True)
    s.handle(ModelRegistered(ModelInfo("late", (profile(7 * MS),))), 0)
    by_key = s.estimates["late"]
    assert sorted(by_key) == sorted(s.devices[d].estimates_key for d in (FAST, SLOW))
    assert all(e.exec_ns(1) == 7 * MS for e in by_key.values())
    s.handle(RequestArrived(InferRequest(1, "late", 0, 100 * MS, 0)), 0)
    s.poll(0)
    assert len(s._queues["late"].ests) == 2
    s.handle(ModelRemoved("late"), 0)
    assert "late" not in s.estimates and "late" not in s._prior_estimates


def test_with_no_device_the_kind_priors_judge() -> None:
    s = ClockworkPolicy(ClockworkConfig(estimator=EstimatorConfig(per_device_estimates=True)))
    s.handle(ModelRegistered(ModelInfo("m", (profile(),))), 0)
    assert s.estimates["m"] == {}
    assert [e.exec_ns(1) for e in s.model_estimates("m")] == [SEED_NS]
    join(s, FAST, 0)
    assert [e.exec_ns(1) for e in s.model_estimates("m")] == [SEED_NS]
    s.handle(WorkerLost(FAST.worker), 0)
    assert s.estimates["m"] == {}
    assert [e.exec_ns(1) for e in s.model_estimates("m")] == [SEED_NS]
