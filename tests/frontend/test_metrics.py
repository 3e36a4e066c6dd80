"""``ServingMetrics`` fed hand-built requests, actions, results and responses through its hooks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from clockwork.core.actions import (
    ActionResult,
    ActionStatus,
    EvictWeights,
    Infer,
    LoadWeights,
)
from clockwork.core.ids import DeviceId
from clockwork.core.requests import InferRequest, Response, ResponseStatus
from clockwork.frontend.api import DurationStat
from clockwork.frontend.metrics import ServingMetrics
from clockwork.service.observers import Observers

from support.units import MS, S

DEV = DeviceId("w0", 0)
OK = ActionStatus.SUCCESS

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Clock:
    def __init__(self, now_ns: int = 0) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


def samples(metrics: ServingMetrics) -> Samples:
    """Every sample of the exposition, parsed back: (name, labels) -> value."""
    out: Samples = {}
    for family in text_string_to_metric_families(metrics.metrics_text().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(got: Samples, name: str, **labels: str) -> float:
    return got[(name, frozenset(labels.items()))]


def request(
    rid: int, arrival_ms: float, deadline_ms: float = 100, model: str = "m"
) -> InferRequest:
    return InferRequest(rid, model, round(arrival_ms * MS), round(deadline_ms * MS))


def infer(
    aid: int,
    rids: tuple[int, ...],
    batch: int,
    expected_ms: float,
    model: str = "m",
    device: DeviceId = DEV,
) -> Infer:
    return Infer(aid, device, model, batch, rids, 0, 10**12, round(expected_ms * MS))


def result(
    aid: int,
    began_ms: float,
    ended_ms: float,
    exec_ms: float = 0.0,
    status: ActionStatus = OK,
    in_ms: float = 0.0,
    out_ms: float = 0.0,
    model: str = "m",
    device: DeviceId = DEV,
) -> ActionResult:
    return ActionResult(
        aid,
        device,
        model,
        status,
        round(began_ms * MS),
        round(began_ms * MS),
        round(ended_ms * MS),
        round(exec_ms * MS),
        round(in_ms * MS),
        round(out_ms * MS),
    )


def response(
    rid: int,
    status: ResponseStatus,
    time_ms: float,
    aid: int = -1,
    batch: int = 0,
    cold: bool = False,
    model: str = "m",
) -> Response:
    return Response(
        rid, model, status, round(time_ms * MS), action_id=aid, batch_size=batch, cold_start=cold
    )


def run_known_sequence(metrics: ServingMetrics) -> None:
    """Two requests served cold by one batch of 2 after a load, one refused, one served late by
    a batch of 1, then the model evicted."""
    metrics.on_request(request(0, 0))
    metrics.on_request(request(1, 1))
    load = LoadWeights(1, DEV, "m", 0, 10 * MS, 5 * MS)
    metrics.on_action_sent(load, 0)
    metrics.on_action_result(result(1, 0, 6, exec_ms=6), 6 * MS)  # 1 ms slower than predicted
    metrics.on_action_sent(infer(2, (0, 1), 2, expected_ms=3), 6 * MS)
    metrics.on_action_result(result(2, 10, 14, exec_ms=3.5, in_ms=0.2, out_ms=0.3), 14 * MS)
    metrics.on_response(response(0, ResponseStatus.SUCCESS, 15, 2, 2, cold=True))
    metrics.on_response(response(1, ResponseStatus.SUCCESS, 15, 2, 2, cold=True))
    metrics.on_request(request(2, 20))
    metrics.on_response(response(2, ResponseStatus.OVERLOADED, 25))
    metrics.on_request(request(3, 30, deadline_ms=40))
    metrics.on_action_sent(infer(3, (3,), 1, expected_ms=2), 30 * MS)
    metrics.on_action_result(result(3, 41, 43, exec_ms=2), 43 * MS)
    metrics.on_response(response(3, ResponseStatus.LATE, 44, 3, 1))
    metrics.on_action_sent(EvictWeights(4, DEV, "m"), 50 * MS)
    metrics.on_action_result(result(4, 50, 50), 50 * MS)


def test_statistics_of_a_known_sequence() -> None:
    metrics = ServingMetrics(wall_clock_ms=lambda: 1_700_000_000_123)
    run_known_sequence(metrics)
    st = metrics.statistics("m", "1")
    assert (st.name, st.version) == ("m", "1")
    assert st.last_inference_ms == 1_700_000_000_123
    # a LATE result still reached the client: a success in Triton's terms
    assert st.inference_count == 3
    assert st.execution_count == 2
    assert st.success == DurationStat(3, (15 + 14 + 14) * MS)
    assert st.fail == DurationStat(1, 5 * MS)
    assert st.queue == DurationStat(3, (10 + 9 + 11) * MS)
    assert st.compute_input == DurationStat(3, 2 * MS * 2 // 10)
    assert st.compute_infer == DurationStat(3, round(3.5 * MS) * 2 + 2 * MS)
    assert st.compute_output == DurationStat(3, 2 * MS * 3 // 10)
    assert st.batch_stats == {1: DurationStat(1, 2 * MS), 2: DurationStat(1, round(3.5 * MS))}
    assert metrics.models() == ("m",)


def test_statistics_of_an_unseen_model_are_zero() -> None:
    st = ServingMetrics().statistics("nobody")
    assert st.name == "nobody"
    assert (st.inference_count, st.execution_count, st.last_inference_ms) == (0, 0, 0)
    assert st.success == st.fail == st.queue == DurationStat()
    assert dict(st.batch_stats) == {}


def test_prometheus_samples_of_a_known_sequence() -> None:
    metrics = ServingMetrics(clock_ns=Clock(10 * S))
    run_known_sequence(metrics)
    got = samples(metrics)
    assert value(got, "clockwork_requests_total", model="m") == 4
    assert value(got, "clockwork_responses_total", model="m", status="SUCCESS") == 2
    assert value(got, "clockwork_responses_total", model="m", status="LATE") == 1
    assert value(got, "clockwork_responses_total", model="m", status="OVERLOADED") == 1
    assert (
        "clockwork_responses_total",
        frozenset({("model", "m"), ("status", "WORKER_LOST")}),
    ) not in got
    assert value(got, "clockwork_success_within_deadline_total", model="m") == 2
    assert value(got, "clockwork_cold_starts_total", model="m") == 2
    assert value(got, "clockwork_loads_total", model="m") == 1
    assert value(got, "clockwork_evictions_total", model="m") == 1
    assert value(got, "clockwork_pending_requests") == 0

    assert value(got, "clockwork_request_duration_seconds_count", model="m") == 3
    assert value(got, "clockwork_request_duration_seconds_sum", model="m") == pytest.approx(0.043)
    # 15 ms and 14 ms twice: all above 10 ms, all within 20 ms
    assert value(got, "clockwork_request_duration_seconds_bucket", model="m", le="0.01") == 0
    assert value(got, "clockwork_request_duration_seconds_bucket", model="m", le="0.02") == 3
    assert value(got, "clockwork_queue_duration_seconds_count", model="m") == 3
    assert value(got, "clockwork_queue_duration_seconds_sum", model="m") == pytest.approx(0.030)
    assert value(got, "clockwork_execution_duration_seconds_count", model="m", batch_size="2") == 1
    assert value(
        got, "clockwork_execution_duration_seconds_sum", model="m", batch_size="2"
    ) == pytest.approx(0.0035)
    assert value(got, "clockwork_execution_duration_seconds_count", model="m", batch_size="1") == 1
    assert value(got, "clockwork_load_duration_seconds_count", model="m") == 1
    assert value(got, "clockwork_load_duration_seconds_sum", model="m") == pytest.approx(0.006)

    # estimate errors: Infer +0.5 ms and 0 ms, load +1 ms (no _sum: prometheus_client leaves it
    # out of a histogram with negative buckets, as OpenMetrics asks)
    assert value(got, "clockwork_estimate_error_seconds_count", kind="infer") == 2
    assert value(got, "clockwork_estimate_error_seconds_bucket", kind="infer", le="-0.0001") == 0
    assert value(got, "clockwork_estimate_error_seconds_bucket", kind="infer", le="0.0") == 1
    assert value(got, "clockwork_estimate_error_seconds_bucket", kind="infer", le="0.0005") == 2
    assert value(got, "clockwork_estimate_error_seconds_count", kind="load") == 1
    assert value(got, "clockwork_estimate_error_seconds_bucket", kind="load", le="0.0005") == 0
    assert value(got, "clockwork_estimate_error_seconds_bucket", kind="load", le="0.001") == 1

    # loaded, then evicted; busy 4 ms + 2 ms in the 10 s before the clock's 10 s
    assert value(got, "clockwork_device_resident_models", device="w0/0") == 0
    assert value(got, "clockwork_device_utilisation_ratio", device="w0/0") == pytest.approx(
        6 * MS / (10 * S)
    )


def test_negative_estimate_error_is_observed() -> None:
    metrics = ServingMetrics()
    metrics.on_action_sent(infer(1, (), 1, expected_ms=5), 0)
    metrics.on_action_result(result(1, 0, 3, exec_ms=3), 3 * MS)  # 2 ms faster than predicted
    got = samples(metrics)
    assert value(got, "clockwork_estimate_error_seconds_bucket", kind="infer", le="-0.005") == 0
    assert value(got, "clockwork_estimate_error_seconds_bucket", kind="infer", le="-0.002") == 1
    assert value(got, "clockwork_estimate_error_seconds_count", kind="load") == 0


def test_pending_requests_gauge() -> None:
    metrics = ServingMetrics()
    for rid in range(3):
        metrics.on_request(request(rid, 0))
    assert value(samples(metrics), "clockwork_pending_requests") == 3
    metrics.on_response(response(1, ResponseStatus.DEADLINE_INFEASIBLE, 0))
    assert value(samples(metrics), "clockwork_pending_requests") == 2
    assert metrics.pending == 2


def test_resident_models_follow_loads_evictions_and_join_reports() -> None:
    metrics = ServingMetrics()
    other = DeviceId("w0", 1)
    metrics.set_resident(other, ["a", "b"])
    metrics.on_action_sent(LoadWeights(1, DEV, "m", 0, S, MS), 0)
    assert metrics.resident(DEV) == frozenset()  # not until the load succeeded
    metrics.on_action_result(result(1, 0, 1, exec_ms=1), MS)
    assert metrics.resident(DEV) == {"m"}
    got = samples(metrics)
    assert value(got, "clockwork_device_resident_models", device="w0/0") == 1
    assert value(got, "clockwork_device_resident_models", device="w0/1") == 2

    # a failed load changes nothing; evicting takes it away
    metrics.on_action_sent(LoadWeights(2, DEV, "x", 0, S, MS), MS)
    metrics.on_action_result(result(2, 1, 1, status=ActionStatus.INSUFFICIENT_PAGES, model="x"), MS)
    assert metrics.resident(DEV) == {"m"}
    metrics.on_action_sent(EvictWeights(3, DEV, "m"), 2 * MS)
    metrics.on_action_result(result(3, 2, 2), 2 * MS)
    assert metrics.resident(DEV) == frozenset()

    # an Infer refused for want of weights says the model is not there
    metrics.on_action_sent(infer(4, (), 1, 1, model="a", device=other), 3 * MS)
    metrics.on_action_result(
        result(4, 3, 3, status=ActionStatus.WEIGHTS_NOT_PRESENT, model="a", device=other), 3 * MS
    )
    assert metrics.resident(other) == {"b"}
    got = samples(metrics)
    assert value(got, "clockwork_device_resident_models", device="w0/0") == 0
    assert value(got, "clockwork_device_resident_models", device="w0/1") == 1
    assert value(got, "clockwork_loads_total", model="m") == 1
    assert "x" not in metrics.models()  # a failed load names no model worth a series
    assert value(got, "clockwork_evictions_total", model="m") == 1


def busy(
    metrics: ServingMetrics, aid: int, began_s: float, ended_s: float, status: ActionStatus = OK
) -> None:
    metrics.on_action_sent(infer(aid, (), 1, 1), round(began_s * S))
    metrics.on_action_result(
        result(aid, began_s * 1000, ended_s * 1000, status=status), round(ended_s * S)
    )


def test_utilisation_of_a_known_busy_interval() -> None:
    clock = Clock()
    metrics = ServingMetrics(clock_ns=clock, utilisation_window_s=10.0, utilisation_bins=100)
    busy(metrics, 1, 15.0, 17.0)
    clock.now_ns = 20 * S  # window 10 s .. 20 s
    assert metrics.utilisation(DEV) == pytest.approx(0.2)
    assert value(
        samples(metrics), "clockwork_device_utilisation_ratio", device="w0/0"
    ) == pytest.approx(0.2)
    clock.now_ns = 26 * S  # 16 s .. 26 s: half of it has left the window
    assert metrics.utilisation(DEV) == pytest.approx(0.1)
    clock.now_ns = 30 * S
    assert metrics.utilisation(DEV) == 0.0
    # between bin edges the window reaches back to the edge: 10.0 s .. 20.05 s
    assert metrics.utilisation(DEV, round(20.05 * S)) == pytest.approx(2 / 10.05)


def test_utilisation_keeps_recent_bins_when_an_old_result_comes_late() -> None:
    clock = Clock(20 * S)
    metrics = ServingMetrics(clock_ns=clock, utilisation_window_s=10.0, utilisation_bins=100)
    busy(metrics, 1, 19.9, 20.0)
    # its bin shares a ring slot with 19.9 s .. 20 s, and has left the window: no trace
    busy(metrics, 2, 9.8, 9.9)
    assert metrics.utilisation(DEV) == pytest.approx(0.1 / 10)


def test_utilisation_counts_failed_runs_and_stays_within_one() -> None:
    clock = Clock(100 * S)
    metrics = ServingMetrics(clock_ns=clock)
    busy(metrics, 1, 85.0, 95.0, ActionStatus.EXECUTION_ERROR)
    busy(metrics, 2, 95.0, 100.0)
    assert metrics.utilisation(DEV) == pytest.approx(1.0)
    busy(metrics, 3, 90.0, 100.0)  # overlapping intervals (clock conversion) never exceed 1
    assert metrics.utilisation(DEV) == 1.0
    assert 0.0 <= metrics.utilisation(DeviceId("w9", 0)) <= 1.0


def test_utilisation_memory_is_fixed() -> None:
    clock = Clock()
    metrics = ServingMetrics(clock_ns=clock, utilisation_window_s=1.0, utilisation_bins=10)
    for i in range(2000):  # 1 ms busy in every 5 ms, for 10 s
        busy(metrics, i, i * 0.005, i * 0.005 + 0.001)
    window = metrics._devices[DEV].busy
    assert len(window._busy) == 11
    clock.now_ns = 10 * S
    assert metrics.utilisation(DEV) == pytest.approx(0.2)


def test_per_request_and_per_action_state_is_dropped() -> None:
    metrics = ServingMetrics()
    run_known_sequence(metrics)
    assert metrics.tracked_requests == 0
    assert metrics.in_flight_actions == 0
    assert metrics._live == {} and metrics._served == {} and metrics._sent == {}

    # a request answered before its Infer's result leaves nothing behind either
    metrics.on_request(request(10, 0))
    metrics.on_action_sent(infer(20, (10,), 1, 1), 0)
    metrics.on_response(response(10, ResponseStatus.MODEL_REMOVED, 1))
    metrics.on_action_result(result(20, 1, 2, exec_ms=1), 2 * MS)
    assert metrics.tracked_requests == 0 and metrics.in_flight_actions == 0


def test_queue_is_measured_to_the_infer_that_served_the_request() -> None:
    metrics = ServingMetrics()
    metrics.on_request(request(0, 0))
    metrics.on_action_sent(infer(1, (0,), 1, 1), 0)
    metrics.on_action_result(result(1, 5, 6, status=ActionStatus.EXECUTION_ERROR), 6 * MS)
    metrics.on_action_sent(infer(2, (0,), 1, 1), 6 * MS)
    metrics.on_action_result(result(2, 20, 21, exec_ms=1), 21 * MS)
    metrics.on_response(response(0, ResponseStatus.SUCCESS, 22, 2, 1))
    st = metrics.statistics("m")
    assert st.queue == DurationStat(1, 20 * MS)
    assert st.execution_count == 1  # the failed run is no execution
    assert st.compute_infer == DurationStat(1, MS)


def test_worker_lost_forgets_its_devices_and_actions() -> None:
    metrics = ServingMetrics()
    lost = DeviceId("w1", 0)
    metrics.set_resident(lost, ["m"])
    metrics.set_resident(DEV, ["m"])
    metrics.on_action_sent(infer(1, (), 1, 1, device=lost), 0)
    metrics.on_action_sent(infer(2, (), 1, 1), 0)
    metrics.worker_lost("w1")
    assert metrics.in_flight_actions == 1
    got = samples(metrics)
    assert ("clockwork_device_resident_models", frozenset({("device", "w1/0")})) not in got
    assert value(got, "clockwork_device_resident_models", device="w0/0") == 1


def test_results_without_a_sent_action_are_ignored() -> None:
    metrics = ServingMetrics()
    metrics.on_action_result(result(99, 0, 1, exec_ms=1), MS)
    assert metrics.statistics("m").execution_count == 0
    assert metrics.models() == ()


def test_attach_keeps_hooks_already_installed() -> None:
    seen: list[Response] = []
    observers = Observers()
    observers.add_hook("on_response", seen.append)
    service = SimpleNamespace(observers=observers)
    metrics = ServingMetrics()
    metrics.attach(service)  # type: ignore[arg-type]
    assert observers.on_request is not None and observers.on_response is not None
    observers.on_request(request(0, 0))
    answer = response(0, ResponseStatus.SUCCESS, 1)
    observers.on_response(answer)
    assert seen == [answer]
    assert metrics.statistics("m").inference_count == 1
    assert metrics.pending == 0


def test_metrics_text_is_valid_exposition() -> None:
    metrics = ServingMetrics()
    run_known_sequence(metrics)
    families = {f.name: f for f in text_string_to_metric_families(metrics.metrics_text().decode())}
    assert families["clockwork_requests"].type == "counter"
    assert families["clockwork_request_duration_seconds"].type == "histogram"
    assert families["clockwork_estimate_error_seconds"].type == "histogram"
    assert families["clockwork_device_utilisation_ratio"].type == "gauge"
    assert families["clockwork_pending_requests"].type == "gauge"
    for name in (
        "clockwork_responses",
        "clockwork_success_within_deadline",
        "clockwork_queue_duration_seconds",
        "clockwork_execution_duration_seconds",
        "clockwork_load_duration_seconds",
        "clockwork_loads",
        "clockwork_evictions",
        "clockwork_cold_starts",
        "clockwork_device_resident_models",
    ):
        assert name in families


def test_metrics_are_per_instance() -> None:
    a, b = ServingMetrics(), ServingMetrics()
    a.on_request(request(0, 0))
    assert value(samples(a), "clockwork_requests_total", model="m") == 1
    assert ("clockwork_requests_total", frozenset({("model", "m")})) not in samples(b)
