"""Serving metrics of a live controller: Prometheus metrics and Triton's per-model statistics.

``ServingMetrics`` observes a ``ControllerService`` through the same four hooks that
``clockwork.service.telemetry.ControllerTelemetry`` uses (``on_request``, ``on_action_sent``,
``on_action_result``, ``on_response``; ``attach`` installs them with
``clockwork.service.observers.attach_observer``, after any hook already there), and keeps the
same two in-flight tables: requests by id until their response, actions by id until their
result. From these it keeps

- Prometheus metrics in its own ``CollectorRegistry`` (``metrics_text`` renders them), named
  ``clockwork_...``: counters and histograms by model, estimate errors by action kind, and per
  device the inference executor's recent utilisation and the number of resident models; beside
  them the ``process_*`` metrics of the controller and its local worker (``process_metrics``);
- Triton's statistics extension per model (``statistics``), with Triton's meaning as far as the
  controller can see it: a result delivered to the client (``SUCCESS`` or ``LATE``: the client gets
  its outputs either way) is a success, every other ending is a failure; queue time runs from
  arrival to the start of the Infer that served the request; the compute phases are the serving
  Infer's measured phases, counted once per request (and once per execution in ``batch_stats``).

Times from the controller are int ns on its clock; Prometheus gets seconds. The hooks run on the
controller's hot path, so each model's labelled metric children are looked up once and kept, and
everything computed per scrape (utilisation, residency, pending requests) is computed only then.

What the hooks cannot see: a worker joining with models already resident (call ``set_resident``)
and a worker lost (call ``worker_lost``, which also forgets actions that will never get a result).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from clockwork.core.actions import Action, ActionResult, ActionStatus, Infer, LoadWeights
from clockwork.core.events import DeviceInfo
from clockwork.core.ids import DeviceId
from clockwork.core.requests import InferRequest, Response, ResponseStatus
from clockwork.core.units import NS_PER_S
from clockwork.frontend.api import DurationStat, ModelStatistics
from clockwork.frontend.process_metrics import ProcessMetrics
from clockwork.service.observers import attach_observer

if TYPE_CHECKING:
    from clockwork.service.controller_service import ControllerService


#: durations of ms-scale serving: 0.5 ms to 10 s
DURATION_BUCKETS_S = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
)
#: the timed loop's lateness: fine below 2 ms (its goal), coarse out to a second (a stall)
LOOP_LATENESS_BUCKETS_S = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)

#: actual minus predicted duration: symmetric around 0 (negative = faster than predicted), fine
#: near 0 where a good estimator lives, out to +-100 ms for loads and outliers
ESTIMATE_ERROR_BUCKETS_S = (
    -0.1,
    -0.05,
    -0.02,
    -0.01,
    -0.005,
    -0.002,
    -0.001,
    -0.0005,
    -0.0001,
    0.0,
    0.0001,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
)


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _measured_ns(result: ActionResult) -> int:
    """An action's duration as the scheduler's estimator measures it (``policies.base``): the
    execution phase where the worker timed it, else the whole began..ended span."""
    return result.exec_ns or (result.ended_ns - result.began_ns)


class _BusyWindow:
    """Busy ns of one executor over a sliding window, in a ring of fixed-width bins: memory is
    fixed whatever the action rate. The window is the ``bins`` whole bins before the current one
    plus the elapsed part of the current one, i.e. the last ``window`` to within one bin (exactly
    ``window`` when the scrape falls on a bin edge)."""

    __slots__ = ("_bin_ns", "_busy", "_n", "_numbers")

    _NONE = -(1 << 62)  # a bin number no time maps to

    def __init__(self, window_ns: int, bins: int) -> None:
        self._bin_ns = max(1, window_ns // bins)
        self._n = bins + 1  # the current, partly elapsed bin needs a slot of its own
        self._busy = [0] * self._n
        self._numbers = [self._NONE] * self._n

    def add(self, start_ns: int, end_ns: int) -> None:
        bin_ns, n = self._bin_ns, self._n
        # what lies more than a whole ring before the end can be in no window: skip it at once
        start_ns = max(start_ns, end_ns - bin_ns * n)
        b = start_ns // bin_ns
        while start_ns < end_ns:
            stop = min(end_ns, (b + 1) * bin_ns)
            slot = b % n
            held = self._numbers[slot]
            if held != b:
                if held > b:  # the slot already holds a later bin: this one left the window
                    start_ns, b = stop, b + 1
                    continue
                self._numbers[slot] = b
                self._busy[slot] = 0
            self._busy[slot] += stop - start_ns
            start_ns, b = stop, b + 1

    def ratio(self, now_ns: int) -> float:
        bin_ns = self._bin_ns
        current = now_ns // bin_ns
        first = current - self._n + 1
        span = now_ns - first * bin_ns  # > 0: at least n - 1 whole bins
        busy = sum(
            ns for no, ns in zip(self._numbers, self._busy, strict=True) if first <= no <= current
        )
        # intervals converted from a worker's clock may overlap a little: never report > 1
        return min(1.0, busy / span)


@dataclass(slots=True)
class _Device:
    busy: _BusyWindow
    resident: set[str] = field(default_factory=set)


class _Stat:
    """A mutable Triton ``StatisticDuration``."""

    __slots__ = ("count", "ns")

    def __init__(self) -> None:
        self.count = 0
        self.ns = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += ns

    def frozen(self) -> DurationStat:
        return DurationStat(self.count, self.ns)


class _Model:
    """One model's labelled metric children (looked up once, here) and Triton statistics."""

    __slots__ = (
        "batches",
        "cold_starts",
        "compute_infer",
        "compute_input",
        "compute_output",
        "evictions",
        "execution_count",
        "executions",
        "fail",
        "inference_count",
        "last_inference_ms",
        "load_duration",
        "loads",
        "metrics",
        "name",
        "queue",
        "queue_duration",
        "request_duration",
        "requests",
        "responses",
        "success",
        "within_deadline",
    )

    def __init__(self, name: str, metrics: ServingMetrics) -> None:
        self.name = name
        self.metrics = metrics
        self.requests = metrics._requests.labels(name)
        self.within_deadline = metrics._within_deadline.labels(name)
        self.request_duration = metrics._request_duration.labels(name)
        self.queue_duration = metrics._queue_duration.labels(name)
        self.load_duration = metrics._load_duration.labels(name)
        self.loads = metrics._loads.labels(name)
        self.evictions = metrics._evictions.labels(name)
        self.cold_starts = metrics._cold_starts.labels(name)
        # open-ended label values: children made on first use
        self.responses: dict[ResponseStatus, Counter] = {}
        self.executions: dict[int, Histogram] = {}
        self.last_inference_ms = 0
        self.inference_count = 0
        self.execution_count = 0
        self.success = _Stat()
        self.fail = _Stat()
        self.queue = _Stat()
        self.compute_input = _Stat()
        self.compute_infer = _Stat()
        self.compute_output = _Stat()
        self.batches: dict[int, _Stat] = {}

    def response_counter(self, status: ResponseStatus) -> Counter:
        c = self.responses.get(status)
        if c is None:
            c = self.responses[status] = self.metrics._responses.labels(self.name, status.name)
        return c

    def execution_histogram(self, batch_size: int) -> Histogram:
        h = self.executions.get(batch_size)
        if h is None:
            h = self.executions[batch_size] = self.metrics._execution_duration.labels(
                self.name, str(batch_size)
            )
        return h


# what a successful Infer did for each request in it, kept from its result to the request's
# response: (action id, began ns, input copy ns, execution ns, output copy ns)
_Served = tuple[int, int, int, int, int]


class ServingMetrics:
    """Prometheus metrics and Triton statistics of one controller. See the module docstring.

    ``clock_ns`` is the controller's clock (for the utilisation window at scrape time);
    ``wall_clock_ms`` gives ``last_inference_ms`` (ms since the epoch). Utilisation is the busy
    fraction of each device's inference executor over the last ``utilisation_window_s``, kept in
    ``utilisation_bins`` bins (its resolution).
    """

    def __init__(
        self,
        *,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        wall_clock_ms: Callable[[], int] = _wall_clock_ms,
        utilisation_window_s: float = 10.0,
        utilisation_bins: int = 100,
    ) -> None:
        if utilisation_window_s <= 0 or utilisation_bins < 1:
            raise ValueError("utilisation_window_s > 0 and utilisation_bins >= 1 required")
        self.clock_ns = clock_ns
        self.wall_clock_ms = wall_clock_ms
        self._window_ns = int(utilisation_window_s * NS_PER_S)
        self._bins = utilisation_bins
        self.registry = CollectorRegistry()
        r = self.registry
        d = DURATION_BUCKETS_S
        self._requests = Counter("clockwork_requests", "Requests accepted", ["model"], registry=r)
        self._responses = Counter(
            "clockwork_responses",
            "Requests answered, by how they ended (a ResponseStatus name: refusals by reason)",
            ["model", "status"],
            registry=r,
        )
        self._within_deadline = Counter(
            "clockwork_success_within_deadline",
            "Results delivered inside the deadline",
            ["model"],
            registry=r,
        )
        self._request_duration = Histogram(
            "clockwork_request_duration_seconds",
            "Arrival to answer of requests given a result",
            ["model"],
            buckets=d,
            registry=r,
        )
        self._queue_duration = Histogram(
            "clockwork_queue_duration_seconds",
            "Arrival to the start of the Infer that served the request",
            ["model"],
            buckets=d,
            registry=r,
        )
        self._execution_duration = Histogram(
            "clockwork_execution_duration_seconds",
            "Measured execution of successful Infer actions",
            ["model", "batch_size"],
            buckets=d,
            registry=r,
        )
        self._load_duration = Histogram(
            "clockwork_load_duration_seconds",
            "Measured duration of successful LoadWeights actions",
            ["model"],
            buckets=d,
            registry=r,
        )
        self._loads = Counter(
            "clockwork_loads", "Successful LoadWeights actions", ["model"], registry=r
        )
        self._evictions = Counter(
            "clockwork_evictions", "Successful EvictWeights actions", ["model"], registry=r
        )
        self._cold_starts = Counter(
            "clockwork_cold_starts",
            "Requests answered that arrived when the model was on no device",
            ["model"],
            registry=r,
        )
        estimate_error = Histogram(
            "clockwork_estimate_error_seconds",
            "Measured minus predicted duration of successful actions",
            ["kind"],
            buckets=ESTIMATE_ERROR_BUCKETS_S,
            registry=r,
        )
        self._infer_error = estimate_error.labels("infer")
        self._load_error = estimate_error.labels("load")
        self._loop_lateness = Histogram(
            "clockwork_loop_lateness_seconds",
            "How late the controller's timed loop ran a 10 ms heartbeat, counted from when its "
            "timer was due: how long anything held the loop",
            buckets=LOOP_LATENESS_BUCKETS_S,
            registry=r,
        )
        self._wake_lateness = Histogram(
            "clockwork_scheduler_wake_lateness_seconds",
            "How late the scheduler's planned wake-ups ran (with uvloop, up to 1 ms of it is "
            "its millisecond timers)",
            buckets=LOOP_LATENESS_BUCKETS_S,
            registry=r,
        )
        pending = Gauge(
            "clockwork_pending_requests", "Requests accepted and not answered", registry=r
        )
        pending.set_function(lambda: len(self._live))
        r.register(_DeviceCollector(self))
        #: ``process_*`` metrics of this process; ``processes.watch`` adds the local worker's
        self.processes = ProcessMetrics()
        r.register(self.processes)

        self._models: dict[str, _Model] = {}
        self._devices: dict[DeviceId, _Device] = {}
        self._live: dict[int, InferRequest] = {}  # request id -> request, until its response
        self._served: dict[int, _Served] = {}  # request id -> its Infer, until its response
        self._sent: dict[int, Action] = {}  # action id -> action, until its result

    # ----------------------------------------------------------------- wiring

    def attach(self, service: ControllerService) -> None:
        """Install the four hooks on ``service``; hooks already installed (e.g. by
        ``ControllerTelemetry.attach``) are still called, before ours."""
        attach_observer(service, self)

    # ----------------------------------------------------------------- hooks

    def on_request(self, request: InferRequest) -> None:
        self._live[request.request_id] = request
        self._model(request.model).requests.inc()

    def on_action_sent(self, action: Action, now_ns: int) -> None:
        self._sent[action.action_id] = action

    def on_action_result(self, result: ActionResult, now_ns: int) -> None:
        action = self._sent.pop(result.action_id, None)
        if action is None:
            return  # sent before we were attached, or a duplicate: nothing to pair it with
        if type(action) is Infer:
            self._infer_result(action, result, now_ns)
        elif type(action) is LoadWeights:
            self._load_result(action, result)
        else:
            self._evict_result(action, result)

    def on_loop_lateness(self, late_ns: int) -> None:
        self._loop_lateness.observe(late_ns / NS_PER_S)

    def on_wake_lateness(self, late_ns: int) -> None:
        self._wake_lateness.observe(late_ns / NS_PER_S)

    def on_response(self, response: Response) -> None:
        rid = response.request_id
        status = response.status
        request = self._live.pop(rid, None)
        served = self._served.pop(rid, None)
        m = self._model(response.model)
        m.response_counter(status).inc()
        m.last_inference_ms = self.wall_clock_ms()
        if response.cold_start:
            m.cold_starts.inc()
        if status is ResponseStatus.SUCCESS:
            m.within_deadline.inc()
        if request is None:
            return  # accepted before we were attached: no arrival time to measure from
        duration = response.time_ns - request.arrival_ns
        if not status.delivered_result:
            m.fail.add(duration)
            return
        m.inference_count += 1
        m.success.add(duration)
        m.request_duration.observe(duration / NS_PER_S)
        if served is None or served[0] != response.action_id:
            return  # no result of the Infer that served it was seen
        _, began, input_ns, exec_ns, output_ns = served
        queue = max(0, began - request.arrival_ns)  # clamped: began is from a worker's clock
        m.queue.add(queue)
        m.queue_duration.observe(queue / NS_PER_S)
        # per request, as Triton does: every request of a batch is charged the whole batch's
        # phases; a backend without copy phases adds 0 ns with the same count, so averages
        # read 0 rather than dividing by 0
        m.compute_input.add(input_ns)
        m.compute_infer.add(exec_ns)
        m.compute_output.add(output_ns)

    # ----------------------------------------------------------------- what the hooks miss

    def set_resident(self, device: DeviceId, models: Iterable[str]) -> None:
        """The models resident on ``device`` as its worker reported them on joining."""
        self._device(device).resident = set(models)

    def on_worker_joined(self, worker: str, devices: tuple[DeviceInfo, ...]) -> None:
        """The controller's hook: the devices a worker reports, with their resident models."""
        for info in devices:
            self.set_resident(info.device, info.resident_models)

    def on_worker_lost(self, worker: str) -> None:
        """The controller's hook."""
        self.worker_lost(worker)

    def worker_lost(self, worker: str) -> None:
        """Forget ``worker``'s devices and its actions in flight (no result will come)."""
        for dev in [d for d in self._devices if d.worker == worker]:
            del self._devices[dev]
        for aid in [a for a, act in self._sent.items() if act.device.worker == worker]:
            del self._sent[aid]

    # ----------------------------------------------------------------- reading

    def metrics_text(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    def models(self) -> tuple[str, ...]:
        """Every model seen in a request, a response or a successful action, sorted."""
        return tuple(sorted(self._models))

    def statistics(self, model: str, version: str = "") -> ModelStatistics:
        """Triton's statistics of ``model`` (all zero for a model never seen)."""
        m = self._models.get(model)
        if m is None:
            zero = DurationStat()
            return ModelStatistics(model, version, 0, 0, 0, zero, zero, zero, zero, zero, zero)
        return ModelStatistics(
            name=model,
            version=version,
            last_inference_ms=m.last_inference_ms,
            inference_count=m.inference_count,
            execution_count=m.execution_count,
            success=m.success.frozen(),
            fail=m.fail.frozen(),
            queue=m.queue.frozen(),
            compute_input=m.compute_input.frozen(),
            compute_infer=m.compute_infer.frozen(),
            compute_output=m.compute_output.frozen(),
            batch_stats={b: s.frozen() for b, s in sorted(m.batches.items())},
        )

    def utilisation(self, device: DeviceId, now_ns: int | None = None) -> float:
        """Busy fraction of ``device``'s inference executor over the window ending ``now_ns``
        (default: the clock now); 0 for a device never seen."""
        d = self._devices.get(device)
        if d is None:
            return 0.0
        return d.busy.ratio(self.clock_ns() if now_ns is None else now_ns)

    def resident(self, device: DeviceId) -> frozenset[str]:
        d = self._devices.get(device)
        return frozenset(d.resident) if d is not None else frozenset()

    @property
    def pending(self) -> int:
        """Requests accepted and not answered yet."""
        return len(self._live)

    @property
    def in_flight_actions(self) -> int:
        """Actions sent and without a result yet."""
        return len(self._sent)

    @property
    def tracked_requests(self) -> int:
        """Per-request entries held (requests and the Infers that served them)."""
        return len(self._live) + len(self._served)

    def device_samples(self) -> list[tuple[str, float, int]]:
        """(device, utilisation now, resident model count) per device, sorted by device."""
        now = self.clock_ns()
        # a copy: a scrape from another thread must not see the dict change under it
        devices = sorted(self._devices.items())
        return [(str(dev), d.busy.ratio(now), len(d.resident)) for dev, d in devices]

    # ----------------------------------------------------------------- internals

    def _model(self, name: str) -> _Model:
        m = self._models.get(name)
        if m is None:
            m = self._models[name] = _Model(name, self)
        return m

    def _device(self, device: DeviceId) -> _Device:
        d = self._devices.get(device)
        if d is None:
            d = self._devices[device] = _Device(_BusyWindow(self._window_ns, self._bins))
        return d

    def _infer_result(self, action: Infer, result: ActionResult, now_ns: int) -> None:
        dev = self._device(result.device)
        # the executor was busy whether or not the Infer succeeded; a refusal spans 0 ns
        end = min(result.ended_ns, now_ns)  # a worker's clock may run a little ahead of ours
        if end > result.began_ns:
            dev.busy.add(result.began_ns, end)
        if not result.ok:
            if result.status is ActionStatus.WEIGHTS_NOT_PRESENT:
                dev.resident.discard(action.model)
            return
        m = self._model(action.model)
        measured = _measured_ns(result)
        m.execution_count += 1
        batch = m.batches.get(action.batch_size)
        if batch is None:
            batch = m.batches[action.batch_size] = _Stat()
        batch.add(measured)
        m.execution_histogram(action.batch_size).observe(measured / NS_PER_S)
        self._infer_error.observe((measured - action.expected_duration_ns) / NS_PER_S)
        served = (
            action.action_id,
            result.began_ns,
            result.input_copy_ns,
            measured,
            result.output_copy_ns,
        )
        live = self._live
        for rid in action.request_ids:
            if rid in live:  # one already answered would never be popped
                self._served[rid] = served

    def _load_result(self, action: LoadWeights, result: ActionResult) -> None:
        dev = self._device(result.device)
        status = result.status
        if status is ActionStatus.SUCCESS:
            m = self._model(action.model)
            measured = _measured_ns(result)
            m.loads.inc()
            m.load_duration.observe(measured / NS_PER_S)
            self._load_error.observe((measured - action.expected_duration_ns) / NS_PER_S)
            dev.resident.add(action.model)
        elif status is ActionStatus.WEIGHTS_ALREADY_PRESENT:
            dev.resident.add(action.model)
        elif status is ActionStatus.EXECUTION_ERROR:
            dev.resident.discard(action.model)  # a failed load leaves no weights behind

    def _evict_result(self, action: Action, result: ActionResult) -> None:
        status = result.status
        if status is ActionStatus.SUCCESS:
            self._model(action.model).evictions.inc()
        if status is ActionStatus.SUCCESS or status is ActionStatus.WEIGHTS_NOT_PRESENT:
            self._device(result.device).resident.discard(action.model)


class _DeviceCollector:
    """Per-device gauges computed at scrape time from ``ServingMetrics``' device state, so the hot
    path only records intervals and residency changes."""

    def __init__(self, metrics: ServingMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        util = GaugeMetricFamily(
            "clockwork_device_utilisation_ratio",
            "Busy fraction of the device's inference executor over the recent window",
            labels=["device"],
        )
        resident = GaugeMetricFamily(
            "clockwork_device_resident_models",
            "Models resident in the device's weights cache",
            labels=["device"],
        )
        for dev, ratio, count in self._metrics.device_samples():
            util.add_metric([dev], ratio)
            resident.add_metric([dev], count)
        yield util
        yield resident


__all__ = ["DURATION_BUCKETS_S", "ESTIMATE_ERROR_BUCKETS_S", "ServingMetrics"]
