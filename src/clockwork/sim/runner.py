"""Runs one simulation: a workload, a scheduler, simulated workers, a network, in virtual time."""

from __future__ import annotations

import gc
import math
import os
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from clockwork.core.actions import Action, ActionResult, Infer
from clockwork.core.errors import ConfigurationError
from clockwork.core.events import (
    ActionFinished,
    DeviceInfo,
    ModelInfo,
    ModelRegistered,
    RequestArrived,
    WorkerJoined,
)
from clockwork.core.ids import DeviceId
from clockwork.core.policies.base import PolicyBase
from clockwork.core.profile import V100_32GB, DeviceKind
from clockwork.core.requests import InferRequest, Response, ResponseStatus
from clockwork.core.scheduler import Scheduler
from clockwork.core.units import NS_PER_S, NS_PER_US
from clockwork.sim.engine import EventQueue
from clockwork.sim.host import ClientDone, HostConfig, HostModel, Thread
from clockwork.sim.noise import Noise, NoiseConfig
from clockwork.sim.turnarounds import Turnarounds
from clockwork.sim.worker import SimDevice, worker_model_for
from clockwork.telemetry.records import UNANSWERED, ActionLog, RequestLog
from clockwork.worker.device_state import Executor
from clockwork.workload.base import Arrival, Workload

# event kinds (Final: compiled code reads them as constants, not through the module's dict on
# every event). _ARRIVAL: the workload's next arrival (aside the heap); _RESPONSE_ARRIVAL: one a
# closed-loop workload made on a response; *_DONE / *_WAKE: an executor's action ends / the
# executor wakes up (the payload is the device: an executor runs one action at a time, so its
# start time waits on the device)
_ARRIVAL: Final = 0
_RESPONSE_ARRIVAL: Final = 1
_TO_WORKER: Final = 2
_INFER_DONE: Final = 3
_LOAD_DONE: Final = 4
_INFER_WAKE: Final = 5
_LOAD_WAKE: Final = 6
_TO_CONTROLLER: Final = 7
_SCHED_WAKE: Final = 8
_SAMPLE: Final = 9
_HOST: Final = 10  # a thread of the serving host (``SimConfig.host``) ends its job
# Final aliases: a compiled-build accommodation (core/requests.py says why)
_perf_counter: Final = time.perf_counter


@dataclass(frozen=True, slots=True)
class SimConfig:
    """A simulated cluster and how long to run it."""

    duration_ns: int
    gpus: int
    gpus_per_worker: int = 2
    device_kind: DeviceKind = V100_32GB
    # one-way controller <-> worker delay; results and actions on a link stay in order
    network_delay_ns: int = 100 * NS_PER_US
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    seed: int = 1
    # after the last arrival, keep running this long for queued work to be answered
    drain_ns: int = 10 * NS_PER_S
    record_logs: bool = True
    # how often (virtual time) to sample queued requests and the process's memory
    sample_every_ns: int = NS_PER_S
    # per worker (w0, w1, ...), the names of the models it serves; None (or a None entry): every
    # model, announced as WorkerJoined(models=None). A worker asked to load another model
    # answers UNKNOWN_MODEL, as a real one does
    worker_models: tuple[tuple[str, ...] | None, ...] | None = None
    # the first ``slow_devices`` devices (w0/0, w0/1, ... in order) run ``slow_factor`` times
    # slower than their kind's profile, loads and executions alike (a throttled or shared
    # device): what per-device estimates are for
    slow_devices: int = 0
    slow_factor: float = 1.0
    # the serving host in front of the scheduler: its loop, its door, its client (``sim.host``);
    # None: requests reach the scheduler when they arrive and are answered when it answers
    host: HostConfig | None = None

    def __post_init__(self) -> None:
        if self.duration_ns <= 0:
            raise ConfigurationError(f"duration must be > 0, got {self.duration_ns} ns")
        if self.gpus <= 0 or self.gpus_per_worker <= 0:
            raise ConfigurationError(
                f"need at least one GPU and one GPU per worker, got "
                f"{self.gpus} GPUs, {self.gpus_per_worker} per worker"
            )
        if self.network_delay_ns < 0 or self.drain_ns < 0:
            raise ConfigurationError("network delay and drain time must be >= 0")
        if self.sample_every_ns <= 0:
            raise ConfigurationError("sample_every_ns must be > 0")
        if not 0 <= self.slow_devices <= self.gpus or self.slow_factor <= 0:
            raise ConfigurationError(
                f"slow devices must be 0..{self.gpus} and their factor > 0, got "
                f"{self.slow_devices} and {self.slow_factor}"
            )
        if self.worker_models is not None and len(self.worker_models) != self.workers:
            raise ConfigurationError(
                f"worker_models names {len(self.worker_models)} workers; "
                f"the cluster has {self.workers}"
            )

    @property
    def workers(self) -> int:
        return math.ceil(self.gpus / self.gpus_per_worker)


@dataclass(frozen=True, slots=True)
class SimResult:
    requests: RequestLog
    actions: ActionLog
    responses: int
    unanswered: int
    end_ns: int
    wall_s: float
    cpu_s: float
    scheduler_cpu_s: float
    events: int
    # (virtual time ns, requests accepted and unanswered, resident memory bytes), periodically
    samples: list[tuple[int, int, int]]
    # stopped early (``should_stop`` said so): the logs hold what ran up to ``end_ns``
    interrupted: bool = False


Progress = Callable[[int, int], None]
# asked between events now and then: True ends the run early (e.g. after Ctrl-C). A Python
# function, so that a pending signal's handler runs before it answers even when this module is
# compiled (compiled loops do not run signal handlers by themselves)
StopCheck = Callable[[], bool]
# events between two progress reports and stop checks
_CHECK_EVERY: Final = 16384


class Simulation:
    """One run. ``run()`` may be called once."""

    def __init__(
        self,
        config: SimConfig,
        models: list[ModelInfo],
        workload: Workload,
        scheduler: Scheduler,
        progress: Progress | None = None,
        should_stop: StopCheck | None = None,
    ) -> None:
        self.config = config
        self.models = models
        self.workload = workload
        self.scheduler = scheduler
        # the same scheduler when it is one of ours: compiled, calls through this reference are
        # direct; through the protocol they are generic method calls (tests wrap schedulers)
        self._policy = scheduler if isinstance(scheduler, PolicyBase) else None
        self.progress = progress
        self.should_stop = should_stop
        self._interrupted = False
        self.q = EventQueue()
        self.request_log = RequestLog()
        self.action_log = ActionLog()
        # request id -> (request, arrival as generated)
        self._live: dict[int, tuple[InferRequest, Arrival]] = {}
        self._sent: dict[int, tuple[Action, int]] = {}
        self._devices: dict[DeviceId, SimDevice] = {}
        self._next_request_id = 0
        # earliest wake-up event in the queue, and the time the scheduler last asked for
        self._wake_ns = -1
        self._want_ns: int | None = None
        self._responses = 0
        self._sched_s = 0.0
        self._samples: list[tuple[int, int, int]] = []
        self._host = (
            None
            if config.host is None
            else HostModel(config.host, self._host_schedule, self._host_submit, self._host_done)
        )
        # with a host: request id -> (arrival, when the client meant to send it), until the
        # client has its answer
        self._at_host: dict[int, tuple[Arrival, int]] = {}
        self._check_fits()

    def _check_fits(self) -> None:
        kind = self.config.device_kind
        for info in self.models:
            profile = info.profile_for(kind.name)
            if profile is None:
                raise ConfigurationError(
                    f"model {info.name!r} has no profile for device kind {kind.name!r}"
                )
            if profile.pages_for(kind) > kind.cache_pages:
                raise ConfigurationError(
                    f"model {info.name!r} needs {profile.pages_for(kind)} pages; a {kind.name} "
                    f"has {kind.cache_pages}"
                )

    # ----------------------------------------------------------------- set-up

    def _start_cluster(self) -> None:
        cfg = self.config
        sched = self.scheduler
        for info in self.models:
            sched.handle(ModelRegistered(info), 0)
        index = 0
        entries = [(info.name, worker_model_for(info, cfg.device_kind)) for info in self.models]
        for w in range(cfg.workers):
            served = None if cfg.worker_models is None else cfg.worker_models[w]
            registered = None if served is None else set(served)
            infos = []
            for i in range(min(cfg.gpus_per_worker, cfg.gpus - index)):
                device = DeviceId(f"w{w}", i)
                scale = cfg.slow_factor if index < cfg.slow_devices else 1.0
                noise = Noise(cfg.noise, cfg.seed * 7919 + index, scale)
                host = cfg.host
                turnaround = host.worker_turnaround_ns if host is not None else 0
                drawn = (
                    Turnarounds(host.worker_turnaround_quantiles_ns, cfg.seed * 7919 + index)
                    if host is not None and host.worker_turnaround_quantiles_ns
                    else None
                )
                sim = SimDevice(device, cfg.device_kind, noise, turnaround, drawn)
                for name, entry in entries:
                    if entry is not None and (registered is None or name in registered):
                        sim.add_model(*entry)
                self._devices[device] = sim
                infos.append(DeviceInfo(device, cfg.device_kind))
                index += 1
            sched.handle(WorkerJoined(f"w{w}", tuple(infos), served), 0)

    # ----------------------------------------------------------------- the loop

    def run(self) -> SimResult:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        self._start_cluster()
        # the cluster's long-lived objects (thousands of models' estimates and queues) never
        # become garbage: frozen, the collector's full passes skip them for the whole run
        # (about 5% of a compiled run's time otherwise)
        gc.freeze()
        try:
            events = self._loop()
        finally:
            gc.unfreeze()
        last_ns = self.q.now_ns
        if self._host is not None:
            # what the host still holds: the client never had an answer
            self._live = {
                rid: (InferRequest(rid, a.model, sent, sent + a.slo_ns, a.priority), a)
                for rid, (a, sent) in self._at_host.items()
            }
        unanswered = len(self._live)
        for request, _ in self._live.values():
            if self.config.record_logs:
                self.request_log.append(
                    request.request_id,
                    request.model,
                    request.arrival_ns,
                    request.deadline_ns,
                    last_ns,
                    UNANSWERED,
                    0,
                    -1,
                    False,
                )
        for action, sent_ns in self._sent.values():
            self._log_unfinished(action, sent_ns)
        return SimResult(
            self.request_log,
            self.action_log,
            self._responses,
            unanswered,
            last_ns,
            time.perf_counter() - wall0,
            time.process_time() - cpu0,
            self._sched_s,
            events,
            self._samples,
            self._interrupted,
        )

    def _loop(self) -> int:
        """Run events until the queue is empty or the run is over; returns events run."""
        cfg = self.config
        q = self.q
        arrivals = self.workload.arrivals()
        end_ns = cfg.duration_ns
        self._push_next_arrival(arrivals, end_ns)
        q.push(0, _SAMPLE, None)
        self._poll(0)
        sched = self.scheduler
        policy = self._policy
        delay = cfg.network_delay_ns
        perf = _perf_counter
        stop_ns = end_ns + cfg.drain_ns
        events = 0
        dirty = False
        results: list[ActionResult] = []
        progress = self.progress
        should_stop = self.should_stop
        # bound once: each ``self._schedule_done`` in the loop would make a bound method
        done_cb = self._schedule_done
        wake_cb = self._schedule_wake
        while len(q):
            t, kind, payload = q.pop()
            if t > stop_ns:
                break
            events += 1
            if kind == _ARRIVAL:
                self._arrive(payload, t)
                self._push_next_arrival(arrivals, end_ns)
                dirty = True
            elif kind == _HOST:
                host = self._host
                assert host is not None
                host.finish(payload, t)
                dirty = True
            elif kind == _TO_CONTROLLER:
                s = perf()
                if policy is not None:
                    policy.handle(ActionFinished(payload), t)
                else:
                    sched.handle(ActionFinished(payload), t)
                self._sched_s += perf() - s
                self._log_action(payload)
                dirty = True
            elif kind == _TO_WORKER:
                dev = self._devices[payload.device]
                r = dev.receive(payload, t)
                if r is not None:
                    q.push_in_order(t + delay, _TO_CONTROLLER, r)
                else:
                    ex = Executor.INFER if type(payload) is Infer else Executor.LOAD
                    dev.advance(ex, t, done_cb, wake_cb, results)
            elif kind in (_INFER_DONE, _LOAD_DONE):
                done_dev: SimDevice = payload
                if kind == _INFER_DONE:
                    ex, began = Executor.INFER, done_dev.began_infer_ns
                else:
                    ex, began = Executor.LOAD, done_dev.began_load_ns
                q.push_in_order(t + delay, _TO_CONTROLLER, done_dev.state.finish(ex, began, t))
                if kind == _INFER_DONE:
                    if self._host is not None:
                        self._host.execution_ended()
                    done_dev.infer_ended(t)
                done_dev.advance(ex, t, done_cb, wake_cb, results)
            elif kind in (_INFER_WAKE, _LOAD_WAKE):
                woken: SimDevice = payload
                ex = Executor.INFER if kind == _INFER_WAKE else Executor.LOAD
                if woken.wake_ns(ex) == t:
                    woken.set_wake_ns(ex, -1)
                woken.advance(ex, t, done_cb, wake_cb, results)
            elif kind == _SCHED_WAKE:
                if t == self._wake_ns:
                    self._wake_ns = -1
                want = self._want_ns
                if want is not None and t >= want:
                    dirty = True
                elif want is not None and (self._wake_ns < 0 or want < self._wake_ns):
                    # a wake-up the scheduler no longer wants: wait for the one it does
                    self._wake_ns = want
                    q.push(want, _SCHED_WAKE, None)
            elif kind == _SAMPLE:
                self._samples.append((t, len(self._live), _rss_bytes()))
                if t < end_ns:
                    q.push(t + cfg.sample_every_ns, _SAMPLE, None)
            else:  # _RESPONSE_ARRIVAL
                self._arrive(payload, t)
                dirty = True
            if results:
                for r in results:
                    q.push_in_order(t + delay, _TO_CONTROLLER, r)
                results.clear()
            if dirty:
                nxt = q.peek_ns()
                if nxt is None or nxt > t:
                    self._poll(t)
                    dirty = False
            if events % _CHECK_EVERY == 0:
                if progress is not None:
                    progress(t, self._responses)
                if should_stop is not None and should_stop():
                    self._interrupted = True
                    break
            if t >= end_ns and not self._live and not self._at_host and not self._stream_left:
                break
        return events

    # ----------------------------------------------------------------- helpers

    _stream_left = True

    def _push_next_arrival(self, arrivals: Iterator[Arrival], end_ns: int) -> None:
        nxt = next(arrivals, None)
        if nxt is None or nxt.time_ns >= end_ns:
            self._stream_left = False
            return
        self.q.put_aside(max(nxt.time_ns, self.q.now_ns), _ARRIVAL, nxt)

    def _arrive(self, arrival: Arrival, now_ns: int) -> None:
        rid = self._next_request_id
        self._next_request_id = rid + 1
        host = self._host
        if host is not None:
            self._at_host[rid] = (arrival, now_ns)
            host.arrive(rid, arrival, now_ns)
            return
        self._hand_over(rid, arrival, now_ns + arrival.slo_ns, now_ns)

    def _hand_over(self, rid: int, arrival: Arrival, deadline_ns: int, now_ns: int) -> None:
        """The scheduler takes request ``rid`` now."""
        request = InferRequest(rid, arrival.model, now_ns, deadline_ns, arrival.priority)
        self._live[rid] = (request, arrival)
        s = _perf_counter()
        policy = self._policy
        if policy is not None:
            policy.handle(RequestArrived(request), now_ns)
        else:
            self.scheduler.handle(RequestArrived(request), now_ns)
        self._sched_s += _perf_counter() - s

    def _poll(self, now_ns: int) -> None:
        s = _perf_counter()
        policy = self._policy
        out = policy.poll(now_ns) if policy is not None else self.scheduler.poll(now_ns)
        self._sched_s += _perf_counter() - s
        q = self.q
        delay = self.config.network_delay_ns
        for action in out.actions:
            self._sent[action.action_id] = (action, now_ns)
            q.push_in_order(now_ns + delay, _TO_WORKER, action)
        for response in out.responses:
            self._respond(response, now_ns)
        wake = out.wake_at_ns
        self._want_ns = wake
        if wake is not None and (self._wake_ns < 0 or wake < self._wake_ns):
            self._wake_ns = wake
            q.push(max(wake, now_ns), _SCHED_WAKE, None)

    def _respond(self, response: Response, now_ns: int) -> None:
        live = self._live
        request, arrival = live[response.request_id]
        del live[response.request_id]
        if self._host is not None:
            self._host.answer(response, now_ns)
            return
        self._ended(request, arrival, response, response.status, response.time_ns, now_ns)

    def _ended(
        self,
        request: InferRequest,
        arrival: Arrival,
        response: Response | None,
        status: ResponseStatus,
        end_ns: int,
        now_ns: int,
    ) -> None:
        """``request`` ended with ``status`` at ``end_ns``: logged, and the workload told."""
        self._responses += 1
        if self.config.record_logs:
            self.request_log.append(
                request.request_id,
                request.model,
                request.arrival_ns,
                request.deadline_ns,
                end_ns,
                # ``_value_``, not ``value``: a compiled-build accommodation (core/requests.py)
                status._value_,
                0 if response is None else response.batch_size,
                -1 if response is None else response.action_id,
                False if response is None else response.cold_start,
            )
        nxt = self.workload.on_response(arrival, now_ns)
        if nxt is not None and nxt.time_ns < self.config.duration_ns:
            self.q.push(max(nxt.time_ns, now_ns), _RESPONSE_ARRIVAL, nxt)

    # ----------------------------------------------------------------- the host's callbacks

    def _host_schedule(self, when_ns: int, thread: Thread) -> None:
        self.q.push(when_ns, _HOST, thread)

    def _host_submit(self, rid: int, arrival: Arrival, deadline_ns: int, now_ns: int) -> None:
        self._hand_over(rid, arrival, deadline_ns, now_ns)

    def _host_done(self, done: ClientDone) -> None:
        """The client has the answer of ``done``: logged as the client saw it, from when it meant
        to send the request to when it had read the answer."""
        del self._at_host[done.request_id]
        a = done.arrival
        request = InferRequest(done.request_id, a.model, done.sent_ns, done.deadline_ns, a.priority)
        self._ended(request, a, done.response, done.status, done.end_ns, done.end_ns)

    def _schedule_done(self, when_ns: int, dev: SimDevice, ex: Executor, began_ns: int) -> None:
        if ex is Executor.INFER:
            if self._host is not None:
                self._host.execution_started()
            dev.began_infer_ns = began_ns
            self.q.push(when_ns, _INFER_DONE, dev)
        else:
            dev.began_load_ns = began_ns
            self.q.push(when_ns, _LOAD_DONE, dev)

    def _schedule_wake(self, when_ns: int, dev: SimDevice, ex: Executor) -> None:
        self.q.push(when_ns, _INFER_WAKE if ex is Executor.INFER else _LOAD_WAKE, dev)

    def _log_action(self, result: ActionResult) -> None:
        sent = self._sent.pop(result.action_id, None)
        if sent is None or not self.config.record_logs:
            return
        action, sent_ns = sent
        self.action_log.append_action(
            action,
            sent_ns,
            result.began_ns,
            result.ended_ns,
            result.exec_ns if result.ok else 0,
            result.status._value_,
        )

    def _log_unfinished(self, action: Action, sent_ns: int) -> None:
        if self.config.record_logs:
            self.action_log.append_action(action, sent_ns, -1, -1, 0, UNANSWERED)


def _rss_bytes() -> int:
    """Resident memory of this process now (Linux), else its peak."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
