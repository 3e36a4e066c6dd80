"""The Clockwork policy driven by hand: events in, actions and responses out."""

import pytest

from clockwork.core.actions import ActionResult, ActionStatus, EvictWeights, Infer, LoadWeights
from clockwork.core.errors import InvalidInputError
from clockwork.core.events import (
    ActionFinished,
    DeviceInfo,
    ModelInfo,
    ModelRegistered,
    ModelRemoved,
    RequestArrived,
    WorkerJoined,
)
from clockwork.core.ids import DeviceId
from clockwork.core.policies import ClockworkConfig, ClockworkPolicy
from clockwork.core.requests import InferRequest, ResponseStatus
from clockwork.core.scheduler import SchedulerOutput

from support.kind_profile import KIND, profile
from support.policy_by_hand import D0, D1, D2, backlog_config, finish, make, only, req, warm
from support.units import MS, S


def test_cold_request_loads_then_infers_inside_its_window() -> None:
    s = make({"a": profile()})
    s.handle(req(1, "a", 0), 0)
    out = s.poll(0)
    (load,) = only(out, LoadWeights)
    assert load.model == "a" and load.device == D0 and load.earliest_ns == 0
    assert load.expected_duration_ns == 5 * MS
    assert not only(out, Infer) and not out.responses
    s.handle(finish(load, 0, 5 * MS), 5 * MS)
    out = s.poll(5 * MS)
    (inf,) = only(out, Infer)
    assert inf.request_ids == (1,) and inf.batch_size == 1
    assert inf.earliest_ns == 5 * MS <= inf.latest_ns
    assert inf.latest_ns == 100 * MS - 2 * MS  # the last start that still meets the deadline
    s.handle(finish(inf, 5 * MS, 7 * MS), 7 * MS)
    out = s.poll(7 * MS)
    (resp,) = out.responses
    assert resp.status is ResponseStatus.SUCCESS and resp.request_id == 1
    assert resp.cold_start and resp.action_id == inf.action_id
    assert s.pending_requests() == 0


def test_batch_grows_to_the_padded_size_the_oldest_deadline_allows() -> None:
    s = make({"a": profile()})
    t = warm(s, "a")
    for i in range(7):
        s.handle(req(i, "a", t), t)
    # 7 padded to 8 (6 ms, 0.86 ms each) cost less per request than 4 alone (4 ms, 1 ms each)
    (inf,) = only(s.poll(t), Infer)
    assert inf.batch_size == 8 and len(inf.request_ids) == 7
    assert inf.expected_duration_ns == 6 * MS


def test_padding_that_costs_more_per_request_leaves_the_youngest_queued() -> None:
    s = make({"a": profile()})
    t = warm(s, "a")
    for i in range(5):
        s.handle(req(i, "a", t), t)
    # 5 padded to 8 take 6 ms (1.2 ms each); the 4 oldest alone take 4 ms (1 ms each)
    first, second = only(s.poll(t), Infer)
    assert (first.batch_size, first.request_ids) == (4, (0, 1, 2, 3))
    assert (second.batch_size, second.request_ids) == (1, (4,))


def test_the_request_left_over_by_a_split_is_planned_without_another_arrival() -> None:
    # 3 padded to 4 take 4 ms (1.33 ms each); the 2 oldest alone take 2.5 ms (1.25 ms each).
    # The one left over must still be planned on an idle device, with no later request of its
    # model to carry it (a multi-sample request on an idle server was refused at its deadline)
    s = make({"a": profile(exec_ms={1: 2, 2: 2.5, 4: 4, 8: 6})})
    t = warm(s, "a")
    for i in range(3):
        s.handle(req(i, "a", t), t)
    out = s.poll(t)
    infers = only(out, Infer)
    assert [a.request_ids for a in infers] == [(0, 1), (2,)]
    end = t
    for a in infers:
        end = max(end, a.earliest_ns) + a.expected_duration_ns
        s.handle(finish(a, end - a.expected_duration_ns, end), end)
    done = [*out.responses, *s.poll(end).responses]
    assert sorted(r.request_id for r in done) == [0, 1, 2]
    assert all(r.status is ResponseStatus.SUCCESS for r in done)


def test_no_split_when_the_requests_left_over_would_miss_their_deadline() -> None:
    # 7 padded to 8 take 7.5 ms; 4 alone cost less per request (1 ms), but the 3 left over
    # would end at 4 + 4 = 8 ms, past the 7.9 ms deadline they share: pad instead
    s = make({"a": profile(exec_ms={1: 2, 2: 3, 4: 4, 8: 7.5})})
    t = warm(s, "a")
    for i in range(7):
        s.handle(req(i, "a", t, slo_ms=7.9), t)
    out = s.poll(t)
    (inf,) = only(out, Infer)
    assert inf.batch_size == 8 and len(inf.request_ids) == 7
    assert not out.responses
    # with a looser deadline the split goes ahead
    s = make({"a": profile(exec_ms={1: 2, 2: 3, 4: 4, 8: 7.5})})
    t = warm(s, "a")
    for i in range(7):
        s.handle(req(i, "a", t, slo_ms=8), t)
    first, second = only(s.poll(t), Infer)
    assert (first.batch_size, len(first.request_ids)) == (4, 4)
    assert (second.batch_size, len(second.request_ids)) == (4, 3)


def test_batch_shrinks_when_the_oldest_deadline_is_tight() -> None:
    s = make({"a": profile()})
    t = warm(s, "a")
    s.handle(req(0, "a", t, slo_ms=3.5), t)  # only batch 2 (3 ms) fits
    for i in range(1, 6):
        s.handle(req(i, "a", t), t)
    first, second = only(s.poll(t), Infer)
    assert first.batch_size == 2 and first.request_ids == (0, 1)
    # the rest follow within the horizon, in one padded batch
    assert second.batch_size == 4 and second.request_ids == (2, 3, 4, 5)


def test_infeasible_deadline_is_refused_at_once() -> None:
    s = make({"a": profile()})
    s.handle(req(1, "a", 0, slo_ms=1.5), 0)  # cold, and even warm batch 1 takes 2 ms
    out = s.poll(0)
    (r,) = out.responses
    assert r.status is ResponseStatus.DEADLINE_INFEASIBLE and "ms" in r.detail
    assert not out.actions  # no device could serve it: loading would not help
    t = warm(s, "a")
    s.handle(req(2, "a", t, slo_ms=1.5), t)  # warm, but batch 1 takes 2 ms
    out = s.poll(t)
    (r,) = out.responses
    assert r.status is ResponseStatus.DEADLINE_INFEASIBLE


def test_a_cold_model_refused_for_its_load_is_loaded_and_then_served() -> None:
    # SLO 6 ms: load 5 ms + batch 1 2 ms does not fit, batch 1 alone does
    s = make({"a": profile()})
    s.handle(req(1, "a", 0, slo_ms=6), 0)
    out = s.poll(0)
    (r,) = out.responses
    assert r.status is ResponseStatus.DEADLINE_INFEASIBLE and "loading" in r.detail
    (load,) = only(out, LoadWeights)  # the refused request still counts as demand
    assert load.model == "a"
    s.handle(finish(load, 0, 5 * MS), 5 * MS)
    s.poll(5 * MS)
    served = 0
    t = 6 * MS
    for i in range(2, 12):
        s.handle(req(i, "a", t, slo_ms=6), t)
        out = s.poll(t)
        assert not out.responses
        (inf,) = only(out, Infer)
        s.handle(finish(inf, t, t + 2 * MS), t + 2 * MS)
        (resp,) = s.poll(t + 2 * MS).responses
        served += resp.status is ResponseStatus.SUCCESS
        t += 10 * MS
    assert served == 10


def test_refusals_make_no_demand_when_the_window_is_zero() -> None:
    s = make(
        {"a": profile()}, config=ClockworkConfig(result_margin_ns=0, refused_demand_window_ns=0)
    )
    s.handle(req(1, "a", 0, slo_ms=6), 0)
    out = s.poll(0)
    assert not out.actions and out.responses[0].status is ResponseStatus.DEADLINE_INFEASIBLE


def test_refused_demand_loads_only_into_room_it_can_make() -> None:
    # 10 pages: "b" (8 pages) is busy with queued work; "a" (4 pages) is refused cold
    s = make({"a": profile(), "b": profile(pages=8)})
    t = warm(s, "b")
    for i in range(3):
        s.handle(req(i, "b", t, slo_ms=50), t)
    s.handle(req(9, "a", t, slo_ms=6), t)
    out = s.poll(t)
    assert not only(out, LoadWeights) and not only(out, EvictWeights)
    assert any(r.status is ResponseStatus.DEADLINE_INFEASIBLE for r in out.responses)


def test_bad_requests_get_specific_answers_and_disturb_nothing() -> None:
    s = make({"a": profile()})
    t = warm(s, "a")
    s.handle(req(1, "a", t), t)
    s.handle(req(2, "nope", t), t)
    s.handle(RequestArrived(InferRequest(3, "a", t, t)), t)
    with pytest.raises(InvalidInputError, match="already pending"):
        s.handle(req(1, "a", t), t)
    out = s.poll(t)
    status = {r.request_id: r.status for r in out.responses}
    assert status == {2: ResponseStatus.MODEL_NOT_FOUND, 3: ResponseStatus.INVALID_INPUT}
    (inf,) = only(out, Infer)
    assert inf.request_ids == (1,)


def test_most_urgent_model_goes_first() -> None:
    s = make({"a": profile(pages=3), "b": profile(pages=3)})
    t = warm(s, "a")
    t = warm(s, "b", t)
    s.handle(req(1, "a", t, slo_ms=50), t)
    s.handle(req(2, "b", t, slo_ms=20), t)
    acts = only(s.poll(t), Infer)
    assert [a.model for a in acts] == ["b", "a"]


def test_planning_stops_at_the_schedule_ahead_horizon() -> None:
    cfg = ClockworkConfig(schedule_ahead_ns=5 * MS, result_margin_ns=0)
    s = make({"a": profile(exec_ms={1: 4})}, config=cfg)
    t = warm(s, "a")
    for i in range(4):
        s.handle(req(i, "a", t), t)
    out = s.poll(t)
    # 4 ms each: the first starts now, the second at +4 ms (< 5 ms horizon), the third would start
    # at +8 ms, beyond the horizon
    assert [a.request_ids for a in only(out, Infer)] == [(0,), (1,)]
    assert out.wake_at_ns == t + 8 * MS - 5 * MS


def test_lru_eviction_of_models_without_demand() -> None:
    s = make({"a": profile(pages=4), "b": profile(pages=4), "c": profile(pages=4)})
    t = warm(s, "a")
    t = warm(s, "b", t)  # 8 of 10 pages used; a is least recently used
    s.handle(req(1, "c", t), t)
    out = s.poll(t)
    (ev,) = [a for a in out.actions if isinstance(a, EvictWeights)]
    assert ev.model == "a"
    (load,) = only(out, LoadWeights)
    assert load.model == "c"
    assert s.devices[D0].free_pages == 2


def test_models_with_demand_are_not_evicted() -> None:
    s = make({"a": profile(pages=4), "b": profile(pages=4), "c": profile(pages=4)})
    t = warm(s, "a")
    t = warm(s, "b", t)
    cfg_busy = s.devices[D0]
    cfg_busy.infer_free_at_ns = t + 50 * MS  # the device is busy: a's request stays queued
    s.handle(req(1, "a", t), t)
    s.handle(req(2, "c", t), t)
    out = s.poll(t)
    evicted = [a.model for a in out.actions if isinstance(a, EvictWeights)]
    assert evicted == ["b"]


def test_expired_queued_requests_are_refused_as_overloaded() -> None:
    s = make({"a": profile()})
    t = warm(s, "a")
    s.devices[D0].infer_free_at_ns = t + 500 * MS  # pretend a long backlog
    s.handle(req(1, "a", t, slo_ms=30), t)
    out = s.poll(t)
    assert not out.responses and out.wake_at_ns is not None
    later = t + 29 * MS
    out = s.poll(later)
    (r,) = out.responses
    assert r.status is ResponseStatus.OVERLOADED
    assert s.pending_requests() == 0


def test_failed_infer_requeues_its_requests() -> None:
    s = make({"a": profile()})
    t = warm(s, "a")
    s.handle(req(1, "a", t), t)
    (inf,) = only(s.poll(t), Infer)
    s.handle(finish(inf, t, t, ActionStatus.TOO_LATE), t + 1)
    (again,) = only(s.poll(t + 1), Infer)
    assert again.request_ids == (1,) and again.action_id != inf.action_id


def test_late_result_is_late_not_success() -> None:
    s = make({"a": profile()})
    t = warm(s, "a")
    s.handle(req(1, "a", t, slo_ms=10), t)
    (inf,) = only(s.poll(t), Infer)
    end = t + 11 * MS
    s.handle(finish(inf, t, end), end)
    (r,) = s.poll(end).responses
    assert r.status is ResponseStatus.LATE


def test_removing_a_model_answers_its_queue_and_evicts_it() -> None:
    s = make({"a": profile()})
    t = warm(s, "a")
    s.devices[D0].infer_free_at_ns = t + 50 * MS
    s.handle(req(1, "a", t), t)
    s.handle(ModelRemoved("a"), t)
    out = s.poll(t)
    assert [r.status for r in out.responses] == [ResponseStatus.MODEL_REMOVED]
    assert [a.model for a in out.actions if isinstance(a, EvictWeights)] == ["a"]
    assert s.devices[D0].free_pages == 10
    s.handle(req(2, "a", t), t)
    assert s.poll(t).responses[0].status is ResponseStatus.MODEL_NOT_FOUND
    with pytest.raises(InvalidInputError):
        s.handle(ModelRemoved("a"), t)


def test_hot_model_is_replicated_on_a_second_device() -> None:
    s = make({"a": profile(exec_ms={1: 2, 8: 8})}, devices=2)
    t = warm(s, "a")
    for i in range(150):  # 150 requests need ~150 ms of device time within 100 ms
        s.handle(req(i, "a", t), t)
    out = s.poll(t)
    loads = only(out, LoadWeights)
    assert [(a.model, a.device) for a in loads] == [("a", DeviceId("w0", 1))]


def test_no_workers_means_overloaded() -> None:
    s = ClockworkPolicy(ClockworkConfig())
    s.handle(ModelRegistered(ModelInfo("a", (profile(),))), 0)
    s.handle(req(1, "a", 0), 0)
    (r,) = s.poll(0).responses
    assert r.status is ResponseStatus.OVERLOADED


def test_model_too_big_for_any_device() -> None:
    s = make({"big": profile(pages=11)})
    s.handle(req(1, "big", 0), 0)
    (r,) = s.poll(0).responses
    assert r.status is ResponseStatus.DEADLINE_INFEASIBLE and "hold" in r.detail


def overload_policy(hold_ms: float = 50) -> tuple[ClockworkPolicy, int]:
    cfg = ClockworkConfig(
        result_margin_ns=0,
        overload_drops=1,
        overload_window_ns=50 * MS,
        overload_hold_ns=int(hold_ms * MS),
    )
    s = make({"a": profile(pages=3), "b": profile(pages=3)}, config=cfg)
    t = warm(s, "a")
    t = warm(s, "b", t)
    return s, t


def _first_after_a_refusal(
    s: ClockworkPolicy, t: int, later_ms: float = 0, urgent: int = 1, fuller: int = 8
) -> Infer:
    """Make D0 refuse a request, then ``later_ms`` after that offer it ``urgent`` requests of
    "b" (the most urgent) beside ``fuller`` less urgent ones of "a"; returns the first Infer."""
    s.devices[D0].infer_free_at_ns = t + 40 * MS
    s.handle(req(1, "a", t, slo_ms=30), t)
    s.poll(t)
    t += 29 * MS
    (r,) = s.poll(t).responses
    assert r.status is ResponseStatus.OVERLOADED
    t += int(later_ms * MS)
    s.devices[D0].infer_free_at_ns = t
    for i in range(urgent):
        s.handle(req(100 + i, "b", t, slo_ms=20), t)
    for i in range(fuller):
        s.handle(req(200 + i, "a", t, slo_ms=40), t)
    first: Infer = only(s.poll(t), Infer)[0]
    return first


def test_overloaded_device_prefers_a_fuller_batch() -> None:
    first = _first_after_a_refusal(*overload_policy())
    assert first.model == "a" and first.batch_size == 8


def test_overloaded_device_passes_a_lone_request_over_for_a_pair() -> None:
    # alone, a request costs the most device time per request: a pair is twice as full
    first = _first_after_a_refusal(*overload_policy(), urgent=1, fuller=2)
    assert first.model == "a" and len(first.request_ids) == 2


def test_overloaded_device_passes_a_batch_over_only_for_one_twice_as_full() -> None:
    first = _first_after_a_refusal(*overload_policy(), urgent=2, fuller=3)
    assert first.model == "b" and len(first.request_ids) == 2
    first = _first_after_a_refusal(*overload_policy(), urgent=2, fuller=4)
    assert first.model == "a" and len(first.request_ids) == 4
    # at least ``efficient_batch`` (4) is enough, whatever the urgent batch
    first = _first_after_a_refusal(*overload_policy(), urgent=3, fuller=4)
    assert first.model == "a" and len(first.request_ids) == 4


def test_overload_lasts_for_the_hold_after_the_last_refusal() -> None:
    # counted within 50 ms, held for 100: still overloaded 80 ms after the refusal
    first = _first_after_a_refusal(*overload_policy(hold_ms=100), later_ms=80)
    assert first.model == "a" and first.batch_size == 8
    # and no longer after the hold
    first = _first_after_a_refusal(*overload_policy(hold_ms=100), later_ms=101)
    assert first.model == "b" and first.batch_size == 1


def test_without_overload_the_most_urgent_goes_first() -> None:
    s, t = overload_policy()
    s.handle(req(2, "b", t, slo_ms=20), t)
    for i in range(3, 11):
        s.handle(req(i, "a", t, slo_ms=40), t)
    first = only(s.poll(t), Infer)[0]
    assert first.model == "b" and first.batch_size == 1


def test_overloaded_device_sheds_old_heads_for_a_fuller_batch() -> None:
    s, t = overload_policy()
    s.devices[D0].infer_free_at_ns = t + 40 * MS
    s.handle(req(1, "a", t, slo_ms=30), t)
    s.poll(t)
    t += 29 * MS
    s.poll(t)
    s.devices[D0].infer_free_at_ns = t
    s.handle(req(2, "a", t, slo_ms=3), t)  # only batch 2 (3 ms) can still serve this one
    for i in range(3, 11):
        s.handle(req(i, "a", t, slo_ms=50), t)
    out = s.poll(t)
    first = only(out, Infer)[0]
    assert first.batch_size == 8 and 2 not in first.request_ids
    shed = [r for r in out.responses if r.request_id == 2]
    assert shed and shed[0].status is ResponseStatus.OVERLOADED


def _refuse_on_busy_d0(s: ClockworkPolicy, t: int) -> int:
    """Make D0 refuse a queued request of "a" (it is booked far ahead); returns the time."""
    s.devices[D0].infer_free_at_ns = t + 500 * MS
    s.handle(req(1, "a", t, slo_ms=30), t)
    assert not only(s.poll(t), LoadWeights)  # one holder still counts: nothing to spread yet
    later = t + 29 * MS
    (r,) = s.poll(later).responses
    assert r.status is ResponseStatus.OVERLOADED
    return later


def test_a_refusing_devices_model_is_loaded_on_a_calm_one() -> None:
    s = make({"a": profile()}, devices=2)
    t = _refuse_on_busy_d0(s, warm(s, "a"))
    s.handle(req(2, "a", t, slo_ms=30), t)
    (load,) = only(s.poll(t), LoadWeights)
    assert (load.model, load.device) == ("a", D1)
    # switched off, D0 still counts as a holder and nothing is loaded
    s = make(
        {"a": profile()}, devices=2, config=ClockworkConfig(result_margin_ns=0, spread_window_ns=0)
    )
    t = _refuse_on_busy_d0(s, warm(s, "a"))
    s.handle(req(2, "a", t, slo_ms=30), t)
    assert not only(s.poll(t), LoadWeights)


def test_a_model_waiting_for_a_calm_device_is_spread_when_one_turns_calm() -> None:
    """No event marks the moment a device has refused nothing for ``spread_calm_ns``: the
    scheduler wakes up for it and loads then."""
    s = make({"a": profile()}, devices=3)
    t = _refuse_on_busy_d0(s, warm(s, "a"))  # D0 holds "a" and refuses its work
    calm_at = t + 50 * MS + 1
    s._refusals._last_ns[D1] = calm_at - 1 - 2 * S  # D1 refused lately: calm 50 ms from now
    s._spreadable_at_ns = -1
    s.devices[D2].load_free_at_ns = t + 10 * S  # D2 is calm but loading for a long time
    s.handle(req(2, "a", t, slo_ms=200), t)
    out = s.poll(t)
    assert not only(out, LoadWeights)
    assert out.wake_at_ns == calm_at
    (load,) = only(s.poll(calm_at), LoadWeights)
    assert (load.model, load.device) == ("a", D1)


def test_no_spreading_onto_a_device_that_refused_lately() -> None:
    s = make({"a": profile()}, devices=2)
    t = _refuse_on_busy_d0(s, warm(s, "a"))
    s._refusals._last_ns[D1] = t - 1 * S  # D1 refused within spread_calm_ns (2 s): not calm
    s._spreadable_at_ns = -1
    s.handle(req(2, "a", t, slo_ms=30), t)
    assert not only(s.poll(t), LoadWeights)


def _serve_one(
    s: ClockworkPolicy, rid: int, t: int, slo_ms: float, run_ms: float
) -> tuple[ResponseStatus, int]:
    """Send one request at ``t``; run whatever Infer it gets for ``run_ms``; returns the answer
    and the time after it."""
    s.handle(req(rid, "a", t, slo_ms=slo_ms), t)
    out = s.poll(t)
    if out.responses:
        return out.responses[0].status, t + MS
    (inf,) = only(out, Infer)
    end = t + int(run_ms * MS)
    s.handle(finish(inf, t, end), end)
    (resp,) = s.poll(end).responses
    return resp.status, end + MS


def test_one_slow_run_does_not_lock_a_model_out() -> None:
    s = make({"a": profile()})
    t = warm(s, "a")
    status, t = _serve_one(s, 1, t, slo_ms=4, run_ms=400)  # a worker paused for 0.4 s once
    assert status is ResponseStatus.LATE
    answers = []
    for i in range(2, 12):
        status, t = _serve_one(s, i, t, slo_ms=4, run_ms=2)
        answers.append(status)
    assert answers == [ResponseStatus.SUCCESS] * 10


def test_a_paused_worker_is_not_charged_to_its_models() -> None:
    # "a" on two devices of one worker; both run it when the worker pauses 0.5 s, and both runs
    # come back 0.5 s long, together
    s = ClockworkPolicy(ClockworkConfig(result_margin_ns=0))
    s.handle(ModelRegistered(ModelInfo("a", (profile(),))), 0)
    s.handle(WorkerJoined("w0", (DeviceInfo(D0, KIND, ("a",)), DeviceInfo(D1, KIND, ("a",)))), 0)
    t = MS
    s.handle(req(1, "a", t, slo_ms=2.5), t)  # only batch 1 fits: one request per device
    s.handle(req(2, "a", t, slo_ms=2.5), t)
    infs = only(s.poll(t), Infer)
    assert {i.device for i in infs} == {D0, D1}
    for inf in infs:
        s.handle(finish(inf, t, t + 500 * MS), t + 500 * MS)
    s.poll(t + 500 * MS)
    t += 501 * MS
    answers = []
    for i in range(10):
        status, t = _serve_one(s, 10 + i, t, slo_ms=4, run_ms=2)
        answers.append(status)
    assert answers == [ResponseStatus.SUCCESS] * 10


def test_a_model_whose_estimate_jumped_is_probed_and_served_again() -> None:
    # no long shots: the probe alone must heal it
    config = ClockworkConfig(result_margin_ns=0, horizon_slo_fraction=0, long_shot_chance=0)
    s = make({"a": profile()}, config=config)
    t = warm(s, "a")
    # a slower spell, twice 3.5 ms (under the outlier factor): the estimate is now 3.5 ms
    for i in range(2):
        status, t = _serve_one(s, i, t, slo_ms=8, run_ms=3.5)
        assert status is ResponseStatus.SUCCESS
    # a 3 ms deadline: the estimate says no, so the request is refused and the idle device probes
    probes = 0
    served_at = None
    for i in range(10, 40):
        s.handle(req(i, "a", t, slo_ms=3), t)
        out = s.poll(t)
        if not out.responses:
            (inf,) = only(out, Infer)
            s.handle(finish(inf, t, t + 2 * MS), t + 2 * MS)
            (r,) = s.poll(t + 2 * MS).responses
            assert r.status is ResponseStatus.SUCCESS
            served_at = i
            break
        assert out.responses[0].status is ResponseStatus.DEADLINE_INFEASIBLE
        for probe in only(out, Infer):
            assert probe.request_ids == () and probe.batch_size == 1
            probes += 1
            s.handle(finish(probe, t, t + 2 * MS), t + 2 * MS)
            s.poll(t + 2 * MS)
        t += 100 * MS + 1
    assert served_at is not None and probes >= 1
    assert t < 5 * S  # healed within seconds, not after minutes


def test_no_probes_when_the_interval_is_zero() -> None:
    s = make({"a": profile()}, config=ClockworkConfig(result_margin_ns=0, probe_interval_ns=0))
    t = warm(s, "a")
    s.handle(req(1, "a", t, slo_ms=1.5), t)
    out = s.poll(t)
    assert not out.actions


def test_warm_start_fills_free_pages_first_choice_first_without_evicting() -> None:
    # 10 pages; four 4-page models: two fit. "c" is asked for first.
    config = ClockworkConfig(result_margin_ns=0, warm_start=True, warm_first=("c",))
    s = make({"a": profile(), "b": profile(), "c": profile(), "d": profile()}, config=config)
    out = s.poll(0)
    loads = only(out, LoadWeights)
    assert [a.model for a in loads] == ["c", "a"]  # two loads in flight at most
    for i, load in enumerate(loads):
        s.handle(finish(load, 0, (i + 1) * 5 * MS), (i + 1) * 5 * MS)
    out = s.poll(10 * MS)
    assert not out.actions  # no room left, and warming never evicts
    s.handle(req(1, "a", 10 * MS, slo_ms=6), 10 * MS)  # warm: served, not refused
    (inf,) = only(s.poll(10 * MS), Infer)
    assert inf.model == "a"


def test_no_warm_start_by_default() -> None:
    s = make({"a": profile()})
    assert not s.poll(0).actions


def test_warm_start_retries_a_load_that_failed() -> None:
    config = ClockworkConfig(result_margin_ns=0, warm_start=True)
    s = make({"a": profile()}, config=config)
    (load,) = only(s.poll(0), LoadWeights)
    s.handle(finish(load, MS, MS, ActionStatus.TOO_LATE), MS)
    (again,) = only(s.poll(MS), LoadWeights)
    assert again.model == "a"
    s.handle(finish(again, MS, 6 * MS), 6 * MS)
    assert not s.poll(6 * MS).actions and not s.warming()


def test_the_horizon_shrinks_for_tight_slos_and_grows_back() -> None:
    s = make(
        {"a": profile(exec_ms={1: 2, 2: 3, 4: 4, 8: 7.5})},
        config=ClockworkConfig(result_margin_ns=0),
    )
    t = warm(s, "a")
    for i in range(7):  # 8 ms SLO: a 1 ms horizon, so only the first batch is planned now
        s.handle(req(i, "a", t, slo_ms=8), t)
    (first,) = only(s.poll(t), Infer)
    assert (first.batch_size, len(first.request_ids)) == (4, 4)
    assert s.poll(t).wake_at_ns == t + 4 * MS - MS  # the second when the device is 1 ms from free
    s.handle(finish(first, t, t + 4 * MS), t + 4 * MS)
    (second,) = only(s.poll(t + 4 * MS), Infer)
    assert len(second.request_ids) == 3
    s.handle(finish(second, t + 4 * MS, t + 8 * MS), t + 8 * MS)
    s.poll(t + 8 * MS)
    # more than a second later, 100 ms SLOs only: the full 10 ms horizon again
    t += 2 * S
    for i in range(20, 24):
        s.handle(req(i, "a", t, slo_ms=100), t)
    (_busy,) = only(s.poll(t), Infer)
    s.handle(req(30, "a", t, slo_ms=100), t)  # the device is busy 4 ms: inside 10 ms, planned
    (queued_behind,) = only(s.poll(t), Infer)
    assert queued_behind.request_ids == (30,)


def test_a_result_that_does_not_come_back_is_refused_at_the_deadline() -> None:
    s = make({"a": profile()})
    t = warm(s, "a")
    s.handle(req(1, "a", t, slo_ms=20), t)
    (inf,) = only(s.poll(t), Infer)
    deadline = t + 20 * MS
    out = s.poll(deadline - 1)
    assert not out.responses and out.wake_at_ns == deadline + 1
    (r,) = s.poll(deadline + 1).responses  # the worker is paused: answer now, not when it wakes
    assert r.status is ResponseStatus.OVERLOADED and "deadline" in r.detail
    s.handle(finish(inf, t, t + 500 * MS), t + 500 * MS)  # it wakes: measured, not answered
    out = s.poll(t + 500 * MS)
    assert not out.responses
    status, _ = _serve_one(s, 2, t + 501 * MS, slo_ms=4, run_ms=2)
    assert status is ResponseStatus.SUCCESS  # and the 500 ms run did not lock the model out


def _drive(s: ClockworkPolicy, out: SchedulerOutput, now: int, until: int) -> list[ResponseStatus]:
    """Run every Infer planned (``out``: the poll at ``now``, and those after) to its expected
    end until ``until``; the statuses answered after ``out``."""
    statuses: list[ResponseStatus] = []
    running: list[tuple[int, Infer]] = []
    free_at: dict[DeviceId, int] = {}  # a device's executor runs its Infers one at a time
    first = True
    while now <= until:
        if not first:
            out = s.poll(now)
            statuses += [r.status for r in out.responses]
        first = False
        for a in only(out, Infer):
            start = max(now, a.earliest_ns, free_at.get(a.device, 0))
            free_at[a.device] = start + a.expected_duration_ns
            running.append((start + a.expected_duration_ns, a))
        running.sort(key=lambda x: x[0])
        wake = out.wake_at_ns
        nxt = min([e for e, _ in running[:1]] + ([wake] if wake is not None else []), default=None)
        if nxt is None:
            break
        now = max(now + 1, nxt)
        while running and running[0][0] <= now:
            end, a = running.pop(0)
            s.handle(finish(a, end - a.expected_duration_ns, end), end)
    return statuses


@pytest.mark.parametrize("admission", [True, False])
def test_backlog_beyond_what_the_holders_can_run_is_refused_at_arrival(admission: bool) -> None:
    config = backlog_config(admission)
    s = make({"a": profile()}, config=config)
    t = warm(s, "a")
    # 60 requests at once, 20 ms to go: batches of 8 (6 ms) three times and one of 1 (2 ms)
    # fit, 25 requests: no schedule serves more
    for rid in range(60):
        s.handle(req(rid, "a", t, slo_ms=20), t)
    out = s.poll(t)
    at_once = out.responses
    if admission:
        assert [r.status for r in at_once] == [ResponseStatus.OVERLOADED] * 35
        assert {r.request_id for r in at_once} == set(range(25, 60))  # the newest
        assert "25 requests of a are queued ahead" in at_once[0].detail
    else:
        assert not at_once
    later = _drive(s, out, t, t + 40 * MS)
    # the same 25 served either way: admission only answers the rest sooner
    assert later.count(ResponseStatus.SUCCESS) == 25
    assert later.count(ResponseStatus.OVERLOADED) == (0 if admission else 35)
    assert s.pending_requests() == 0


def test_a_device_planned_past_the_deadline_refuses_at_arrival_with_admission() -> None:
    config = backlog_config()
    s = make({"a": profile()}, config=config)
    t = warm(s, "a")
    s.devices[D0].infer_free_at_ns = t + 500 * MS  # the only holder is planned for 500 ms
    s.handle(req(1, "a", t, slo_ms=30), t)
    (r,) = s.poll(t).responses  # nothing queued ahead, and still no room before its deadline
    assert r.status is ResponseStatus.OVERLOADED and "at most 0" in r.detail
    assert s.pending_requests() == 0


@pytest.mark.parametrize("admission", [True, False])
def test_early_refusal_answers_as_arrival_would_and_changes_nothing(admission: bool) -> None:
    config = backlog_config(admission)
    s = make({"a": profile()}, config=config)
    t = warm(s, "a")
    # cold or unknown: only taking the request can tell (a load, demand for one)
    assert s.early_refusal("b", t + 20 * MS, t) is None
    assert s.early_refusal("a", t + 20 * MS, t) is None  # nothing queued: it would be served
    for rid in range(25):  # as many as the holder can run in 20 ms (see above)
        s.handle(req(rid, "a", t, slo_ms=20), t)
    assert not s.poll(t).responses
    before = (s.pending_requests(), len(s._queues["a"].queue))
    verdict = s.early_refusal("a", t + 20 * MS, t)
    # a deadline the backlog leaves no room for: refused as its arrival would be, or not asked
    if not admission:
        assert verdict is None
        return
    assert verdict is not None
    status, detail = verdict
    assert status is ResponseStatus.OVERLOADED and "requests of a are queued ahead" in detail
    # a later deadline leaves room; a budget below batch 1 is the estimate's to refuse
    assert s.early_refusal("a", t + 200 * MS, t) is None
    assert s.early_refusal("a", t + 1 * MS, t) is None
    assert (s.pending_requests(), len(s._queues["a"].queue)) == before
    s.handle(req(99, "a", t, slo_ms=20), t)
    (r,) = s.poll(t).responses
    assert (r.request_id, r.status, r.detail) == (99, status, detail)


@pytest.mark.parametrize("level", [0.0, 0.9])
def test_admission_by_probability_serves_what_one_slow_run_would_refuse(level: float) -> None:
    # a noisy executor: batch 1 runs 2.0-2.6 ms and once 3.5 ms (under the outlier factor, so
    # it counts). A request with 3.2 ms left meets its deadline unless it is that slow run:
    # the paper's estimate (the slowest of the last 10) refuses it; at level 0.9 it is admitted
    # and served
    from clockwork.core.estimator import EstimatorConfig

    # (no long shots: they would try the refused request on the idle device)
    config = ClockworkConfig(
        result_margin_ns=0,
        horizon_slo_fraction=0,
        long_shot_chance=0,
        estimator=EstimatorConfig(level=level),
    )
    s = make({"a": profile()}, config=config)
    t = warm(s, "a")
    for i, run_ms in enumerate([2.0, 2.3, 3.5, 2.1, 2.6, 2.2, 2.4, 2.0, 2.5], start=1):
        status, t = _serve_one(s, i, t, slo_ms=10, run_ms=run_ms)
        assert status is ResponseStatus.SUCCESS
    status, t = _serve_one(s, 99, t, slo_ms=3.2, run_ms=2.2)
    assert status is (ResponseStatus.SUCCESS if level else ResponseStatus.DEADLINE_INFEASIBLE)


def test_a_request_refused_by_its_estimate_is_tried_on_an_idle_holder() -> None:
    # batch 1 runs 2 ms (the profile's seed, no spread measured yet: the prior spread applies);
    # 1.99 ms left: the estimate refuses it, but it has a fair chance on the idle device
    s = make({"a": profile()})
    t = warm(s, "a")
    s.handle(req(1, "a", t, slo_ms=1.99), t)
    out = s.poll(t)
    assert not out.responses
    (inf,) = only(out, Infer)
    assert inf.request_ids == (1,) and inf.batch_size == 1
    # the worker starts it only while the chance holds: before the deadline less a fast run
    assert t <= inf.latest_ns < t + int(1.99 * MS) - int(1.9 * MS)
    # another arrives while the device is busy with the try: refused at once, not queued
    s.handle(req(2, "a", t, slo_ms=1.99), t)
    (r,) = s.poll(t).responses
    assert r.status is ResponseStatus.DEADLINE_INFEASIBLE
    # the try misses: answered at its deadline (not late, not left waiting)
    deadline = t + int(1.99 * MS)
    out = s.poll(deadline + 1)
    (r,) = out.responses
    assert r.request_id == 1 and r.status is ResponseStatus.OVERLOADED
    s.handle(finish(inf, t, t + 2 * MS), t + 2 * MS)
    assert not s.poll(t + 2 * MS).responses
    assert s.pending_requests() == 0


def test_no_long_shot_without_a_chance_or_when_turned_off() -> None:
    for chance, slo_ms in ((0.02, 1.5), (0.0, 1.99)):
        config = ClockworkConfig(
            result_margin_ns=0, horizon_slo_fraction=0, long_shot_chance=chance
        )
        s = make({"a": profile()}, config=config)
        t = warm(s, "a")
        s.handle(req(1, "a", t, slo_ms=slo_ms), t)
        out = s.poll(t)
        assert [r.status for r in out.responses] == [ResponseStatus.DEADLINE_INFEASIBLE]
        assert not only(out, Infer)


def test_the_margin_and_lead_are_learned_from_the_links() -> None:
    # seed margin 1 ms: a request with 2.5 ms left for a 2 ms run is refused
    config = ClockworkConfig(result_margin_ns=MS, horizon_slo_fraction=0, long_shot_chance=0)
    s = make({"a": profile()}, config=config)
    s.handle(req(1, "a", 0, slo_ms=100), 0)
    (load,) = only(s.poll(0), LoadWeights)
    s.handle(finish(load, 0, 5 * MS), 5 * MS)
    (inf,) = only(s.poll(5 * MS), Infer)
    # the links: received 0.1 ms after sent, result back 0.1 ms after the end
    sent = 5 * MS
    result = ActionResult(
        inf.action_id, inf.device, inf.model, ActionStatus.SUCCESS,
        sent + 100_000, sent + 100_000, sent + 2_100_000, 2 * MS,
    )  # fmt: skip
    s.handle(ActionFinished(result), sent + 2_200_000)
    s.poll(sent + 2_200_000)
    t = 10 * MS
    s.handle(req(2, "a", t, slo_ms=2.5), t)
    out = s.poll(t)
    assert not out.responses
    (inf,) = only(out, Infer)
    # planned to start after the lead, and to end the learned margin before the deadline
    assert inf.latest_ns == t + int(2.5 * MS) - 100_000 - 2 * MS


def test_a_model_with_two_queued_does_not_pass_an_earlier_lone_request() -> None:
    # batch 1, 2, 4, 8 take 2, 3, 5, 10 ms. At 17 ms "a" (one request due at 26 ms) can no
    # longer run a batch of 8 (key 16) and is keyed for 4 (21); "b" (two due at 28) still has
    # its batch-8 key (18), which it cannot fill: by the batch it would run (2: key 25), "a"
    # is more urgent, and runs first
    exec_ms: dict[int, float] = {1: 2, 2: 3, 4: 5, 8: 10}
    s = make({"a": profile(2, exec_ms=exec_ms), "b": profile(2, exec_ms=exec_ms)})
    t = warm(s, "a")
    t = warm(s, "b", t)
    s.handle(req(1, "a", t, slo_ms=26), t)
    s.handle(req(2, "b", t, slo_ms=28), t)
    s.handle(req(3, "b", t, slo_ms=28), t)
    infers = only(s.poll(t + 17 * MS), Infer)
    assert [(i.model, i.batch_size) for i in infers] == [("a", 1), ("b", 2)]


def test_early_refusal_of_a_call_counts_all_its_samples() -> None:
    config = backlog_config()
    s = make({"a": profile()}, config=config)
    t = warm(s, "a")
    for rid in range(20):  # 5 short of what the holder can run in 20 ms
        s.handle(req(rid, "a", t, slo_ms=20), t)
    assert not s.poll(t).responses
    assert s.early_refusal("a", t + 20 * MS, t, 5) is None  # the last 5 fit
    verdict = s.early_refusal("a", t + 20 * MS, t, 6)  # one of 6 would not: none is taken
    assert verdict is not None
    status, detail = verdict
    assert status is ResponseStatus.OVERLOADED
    # (some of the 20 were sent: those left queued and the room after the sent ones)
    assert detail == (
        "4 requests of a are queued ahead of its 6 samples; "
        "the devices holding it could run at most 9 before its deadline"
    )


def test_the_backlog_rule_counts_from_the_end_of_a_load_in_flight() -> None:
    # cold: the first request starts a load (5 ms); requests due at 12 ms can run from 5 ms,
    # one batch of 8 (6 ms) by their deadline, not 9
    config = backlog_config()
    s = make({"a": profile()}, config=config)
    s.handle(req(0, "a", 0), 0)
    (load,) = only(s.poll(0), LoadWeights)
    assert s.early_refusal("a", 12 * MS, 0, 8) is None
    assert s.early_refusal("a", 12 * MS, 0, 9) is not None
    for rid in range(1, 10):
        s.handle(req(rid, "a", 0, slo_ms=12), 0)
    (refused,) = s.poll(0).responses
    assert refused.request_id == 9 and refused.status is ResponseStatus.OVERLOADED
    assert "could run at most 8 before its deadline" in refused.detail
    s.handle(finish(load, 0, 5 * MS), 5 * MS)
    infers = only(s.poll(5 * MS), Infer)
    assert set(range(1, 9)) <= {r for a in infers for r in a.request_ids}


@pytest.mark.parametrize("admission", [True, False])
def test_a_tighter_deadline_that_would_push_accepted_requests_late_is_refused(
    admission: bool,
) -> None:
    # 25 requests due in 20 ms are as many as the holder can run by then (see above); one due
    # sooner would run first and push the last of them past its deadline: it is the newcomer
    # that is refused, at once, not a request already taken later
    config = backlog_config(admission)
    s = make({"a": profile()}, config=config)
    t = warm(s, "a")
    for rid in range(25):
        s.handle(req(rid, "a", t, slo_ms=20), t)
    verdict = s.early_refusal("a", t + 10 * MS, t)
    s.handle(req(99, "a", t, slo_ms=10), t)
    out = s.poll(t)
    later = _drive(s, out, t, t + 40 * MS)
    if admission:
        assert verdict is not None and "push requests of a queued before it" in verdict[1]
        (r,) = out.responses
        assert (r.request_id, r.status, r.detail) == (99, ResponseStatus.OVERLOADED, verdict[1])
        assert later == [ResponseStatus.SUCCESS] * 25
    else:
        assert verdict is None and not out.responses
        # taken, it ran first, and one accepted before it was refused at its latest start
        assert later.count(ResponseStatus.SUCCESS) == 25
        assert later.count(ResponseStatus.OVERLOADED) == 1
    assert s.pending_requests() == 0


def test_a_deadline_with_room_behind_the_queue_is_still_taken() -> None:
    # the same newcomer with 24 queued: the last of them still fits behind it
    config = backlog_config()
    s = make({"a": profile()}, config=config)
    t = warm(s, "a")
    for rid in range(24):
        s.handle(req(rid, "a", t, slo_ms=20), t)
    assert s.early_refusal("a", t + 10 * MS, t) is None
    s.handle(req(99, "a", t, slo_ms=10), t)
    out = s.poll(t)
    assert not out.responses
    assert _drive(s, out, t, t + 40 * MS) == [ResponseStatus.SUCCESS] * 25


@pytest.mark.parametrize("admission", [True, False])
def test_requests_an_infer_did_not_run_are_admitted_again_by_the_backlog_rule(
    admission: bool,
) -> None:
    # 16 due in 14 ms: two batches of 8 (6 ms each) back to back. The first is refused too
    # late at 3 ms; the second still runs from there (to 9 ms), after which only a batch of 4
    # fits by 14 ms: 4 of the 8 requeued are answered now, not at their latest start
    config = backlog_config(admission)
    s = make({"a": profile()}, config=config)
    t = warm(s, "a")
    for rid in range(16):
        s.handle(req(rid, "a", t, slo_ms=14), t)
    first, second = sorted(only(s.poll(t), Infer), key=lambda a: a.earliest_ns)
    assert (first.batch_size, second.batch_size) == (8, 8)
    s.handle(finish(first, t + 3 * MS, t + 3 * MS, ActionStatus.TOO_LATE), t + 3 * MS)
    out = s.poll(t + 3 * MS)
    if admission:
        assert [r.status for r in out.responses] == [ResponseStatus.OVERLOADED] * 4
        assert {r.request_id for r in out.responses} == set(first.request_ids[4:])
        assert "could run at most 4 before its deadline" in out.responses[0].detail
    else:
        assert not out.responses
    (again,) = only(out, Infer)
    assert set(again.request_ids) == set(first.request_ids[:4]) and again.batch_size == 4
    s.handle(finish(second, t + 3 * MS, t + 9 * MS), t + 9 * MS)
    served = [r.status for r in s.poll(t + 9 * MS).responses]
    s.handle(finish(again, t + 9 * MS, t + 13 * MS), t + 13 * MS)
    served += [r.status for r in s.poll(t + 13 * MS).responses]
    later = served + _drive(s, s.poll(t + 30 * MS), t + 30 * MS, t + 40 * MS)
    assert later.count(ResponseStatus.SUCCESS) == 12
    # without the rule the 4 the backlog could not serve waited for their latest start
    assert later.count(ResponseStatus.OVERLOADED) == (0 if admission else 4)
    assert s.pending_requests() == 0


@pytest.mark.parametrize("gap_ms", [0, 1])
def test_the_backlog_rule_counts_the_workers_turnaround_between_infers(gap_ms: int) -> None:
    # the worker starts each Infer queued behind another ``gap_ms`` after that one ends (a
    # result sent, inputs copied). Learned from results, the rule counts it before every batch
    # behind the device's planned work: 3 batches of 8 back to back by a deadline 18 ms after
    # the device frees fit with no gap; with 1 ms before each they need 21 ms
    config = backlog_config()
    s = make({"a": profile()}, config=config)
    t = warm(s, "a")
    gap = gap_ms * MS
    rid = 0
    for _ in range(6):  # one Infer ends as the next, sent behind it, starts a gap later
        t += MS  # (the device idle before the first: its start is no turnaround)
        s.handle(req(rid, "a", t, slo_ms=8), t)
        (a,) = only(s.poll(t), Infer)
        s.handle(req(rid + 1, "a", t, slo_ms=8), t)
        (b,) = only(s.poll(t), Infer)  # planned behind ``a``
        rid += 2
        s.handle(finish(a, t, t + a.expected_duration_ns), t + a.expected_duration_ns)
        t += a.expected_duration_ns
        began = t + gap
        t = began + b.expected_duration_ns
        s.handle(
            ActionFinished(
                ActionResult(
                    b.action_id,
                    b.device,
                    b.model,
                    ActionStatus.SUCCESS,
                    t - 5 * MS,
                    began,
                    t,
                    b.expected_duration_ns,
                )
            ),
            t,
        )
        assert [r.status for r in s.poll(t).responses] == [ResponseStatus.SUCCESS] * 2
    assert s._gaps.typical.value_ns == gap
    s.devices[D0].infer_free_at_ns = t + 4 * MS  # planned work: 4 ms more
    due = t + 22 * MS  # 4 + 18
    verdict = s.early_refusal("a", due, t, 24)
    if gap_ms:
        assert verdict is not None and "could run at most 18" in verdict[1]  # 8, 8 and 2
    else:
        assert verdict is None


@pytest.mark.parametrize(("count", "refused"), [(1, False), (2, True)])
def test_the_requests_right_behind_a_tighter_deadline_are_the_ones_it_would_push(
    count: int, refused: bool
) -> None:
    # 16 due at 14 ms (room for 17: 8, 8 and 1) and 20 due at 40 ms (room for far more): a call
    # due at 10 ms fits itself, and pushes the 16 past their room only if it has 2 samples
    config = backlog_config()
    s = make({"a": profile()}, config=config)
    t = warm(s, "a")
    for rid in range(36):
        s.handle(req(rid, "a", t, slo_ms=14 if rid < 16 else 40), t)
    verdict = s.early_refusal("a", t + 10 * MS, t, count)
    if refused:
        assert verdict is not None and "could run at most 17 by then" in verdict[1]
    else:
        assert verdict is None
