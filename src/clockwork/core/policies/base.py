"""What every policy shares: event dispatch, request bookkeeping, the cluster view, estimates,
action ids and timelines. Policies subclass it and decide *what* to run; this decides nothing.

Invariants kept here, whatever the policy:
- every accepted request is answered exactly once (``pending`` holds the unanswered ones);
- a result is SUCCESS only if it reached the scheduler by the request's deadline;
- the cluster view never holds more pages than a device has;
- a model is loaded only on devices whose worker serves it (``DeviceView.models``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Final

from clockwork.core.actions import (
    Action,
    ActionResult,
    ActionStatus,
    EvictWeights,
    Infer,
    LoadWeights,
)
from clockwork.core.cluster import DeviceView, Residency
from clockwork.core.errors import InvalidInputError
from clockwork.core.estimator import EstimatorConfig, ModelEstimates
from clockwork.core.events import (
    ActionFinished,
    CallArrived,
    DeviceInfo,
    ModelInfo,
    ModelRegistered,
    ModelRemoved,
    RequestArrived,
    RequestsWithdrawn,
    WorkerJoined,
    WorkerLost,
    WorkerModelsChanged,
)
from clockwork.core.ids import DeviceId
from clockwork.core.profile import ModelProfile
from clockwork.core.requests import InferRequest, Response, ResponseStatus
from clockwork.core.scheduler import SchedulerOutput

# Final: compiled code reads these as constants, not through the module's dict on every use
QUEUED: Final = 0
IN_FLIGHT: Final = 1
DONE: Final = 2


class PendingRequest:
    """An accepted, unanswered request and what the scheduler knows about it."""

    __slots__ = ("call", "cold", "lost", "request", "state")

    def __init__(self, request: InferRequest, cold: bool) -> None:
        self.request = request
        self.cold = cold
        self.state = QUEUED
        # its device was lost once: if it cannot be served any more, say WORKER_LOST
        self.lost = False
        # the call it is a sample of (``CallArrived``), or None
        self.call: Call | None = None


class Call:
    """The requests of one ``CallArrived``; ``failed``: the status of the first answered
    without a result (None while none was)."""

    __slots__ = ("failed", "members")

    def __init__(self) -> None:
        self.members: list[PendingRequest] = []
        self.failed: ResponseStatus | None = None


def _withdrawn_why(status: ResponseStatus) -> str:
    return f"another sample of its call was refused ({status._value_})"


class Flight:
    """An action sent and not yet answered."""

    __slots__ = ("action", "device", "requests", "sent_ns")

    def __init__(
        self, action: Action, device: DeviceView, sent_ns: int, requests: list[PendingRequest]
    ) -> None:
        self.action = action
        self.device = device
        self.sent_ns = sent_ns
        self.requests = requests


class PolicyBase:
    """Shared machinery of all policies; see the module docstring."""

    name = "base"
    # whether this policy's ``plan`` is settled as described at ``_settled`` (opt in: a policy
    # must clear ``_settled`` in ``plan`` wherever planning again at once could do more)
    settles = False

    def __init__(self, estimator: EstimatorConfig) -> None:
        self.estimator_config = estimator
        self.per_device_estimates = estimator.per_device_estimates
        self.models: dict[str, ModelInfo] = {}
        # model -> ``DeviceView.estimates_key`` -> estimates: keyed by device kind name, or with
        # per-device estimates by device (only devices connected now, of a kind the model has a
        # profile for)
        self.estimates: dict[str, dict[str, ModelEstimates]] = {}
        # with per-device estimates: model -> device kind name -> the profile's estimates, never
        # measured (what judges a model while no device of a kind it has a profile for is here)
        self._prior_estimates: dict[str, dict[str, ModelEstimates]] = {}
        self.devices: dict[DeviceId, DeviceView] = {}
        self.workers: dict[str, tuple[DeviceId, ...]] = {}
        # worker -> the models it serves (None: all); its devices' views share the same set
        self.worker_models: dict[str, frozenset[str] | None] = {}
        # model -> why no connected device can serve it ("" if one can); cleared whenever
        # devices, models or what workers serve change
        self._unservable: dict[str, str] = {}
        self.pending: dict[int, PendingRequest] = {}
        self.inflight: dict[int, Flight] = {}
        # per device: in-flight Infer flights in the order the device will run them
        self.infer_chain: dict[DeviceId, deque[Flight]] = {}
        self._actions: list[Action] = []
        self._responses: list[Response] = []
        self._next_action_id = 1
        # True while a poll would plan nothing before ``_settled_wake_ns``: the last poll planned
        # everything it could and no event since can have changed that. Every event clears it;
        # a policy may set it again for an arrival it can show changes nothing but the wake-up
        # (most arrivals under load: their model's devices are planned past the horizon), and
        # clears it from ``plan`` when another poll at once could plan more
        self._settled = False
        self._settled_wake_ns: int | None = None
        # ``_settled`` as it was before the event being handled
        self._settled_before_event = False
        self._quiet_output: SchedulerOutput | None = None
        self._handlers: dict[type, Callable[[Any, int], None]] = {
            RequestArrived: self._on_request_event,
            ActionFinished: self._on_result_event,
            WorkerJoined: self._on_worker_joined,
            WorkerModelsChanged: self._on_worker_models_changed,
            WorkerLost: self._on_worker_lost,
            ModelRegistered: self._on_model_registered,
            ModelRemoved: self._on_model_removed,
            RequestsWithdrawn: self._on_withdrawn,
            CallArrived: self._on_call_event,
        }
        # calls that failed since their queued samples were last withdrawn
        self._failed_calls: list[Call] = []

    # ----------------------------------------------------------------- the interface

    def handle(self, event: Any, now_ns: int) -> None:
        kind = type(event)
        if kind not in self._handlers:
            raise InvalidInputError(f"{self.name}: not an event: {event!r}")
        self._settled_before_event = self._settled
        self._settled = False
        # the two per-request events are called directly (compiled: a C call; through the
        # table, a generic call of a bound method)
        if kind is RequestArrived:
            self._on_request_event(event, now_ns)
        elif kind is ActionFinished:
            self._on_result_event(event, now_ns)
        else:
            self._handlers[kind](event, now_ns)
        if self._failed_calls:
            self.withdraw_failed_calls(now_ns)

    def poll(self, now_ns: int) -> SchedulerOutput:
        wake = self._settled_wake_ns
        if not (
            self._settled
            and (wake is None or now_ns < wake)
            and not self._responses
            and not self._actions
        ):
            self._settled = self.settles
            self.plan(now_ns)
            if self._failed_calls:
                self.withdraw_failed_calls(now_ns)
            wake = self.wake_at(now_ns)
            self._settled_wake_ns = wake
        if not self._actions and not self._responses:
            # most polls say nothing new: one empty output per wake-up time, not one per poll
            out = self._quiet_output
            if out is None or out.wake_at_ns != wake:
                out = self._quiet_output = SchedulerOutput((), (), wake)
            return out
        out = SchedulerOutput(self._actions, self._responses, wake)
        self._actions = []
        self._responses = []
        return out

    def pending_requests(self) -> int:
        return len(self.pending)

    # ----------------------------------------------------------------- policy hooks

    def plan(self, now_ns: int) -> None:
        """Decide actions up to the policy's horizon (emit with ``send``)."""

    def wake_at(self, now_ns: int) -> int | None:
        return None

    def early_refusal(
        self, model: str, deadline_ns: int, now_ns: int, count: int = 1
    ) -> tuple[ResponseStatus, str] | None:
        """The refusal ``count`` requests of ``model`` due at ``deadline_ns`` (the samples of
        one call) would get if they arrived now, where that is known without changing anything;
        None: they would be queued, or only taking them can tell. A front door asks before it
        decodes a request's inputs."""
        return None

    def accept(self, p: PendingRequest, now_ns: int) -> None:
        """A valid request for a known model arrived: queue it, or answer it."""
        raise NotImplementedError

    def requeue(self, p: PendingRequest, now_ns: int) -> None:
        """A request came back from a failed or lost Infer; it is QUEUED again."""
        raise NotImplementedError

    def drop_queued(self, model: str) -> list[PendingRequest]:
        """Remove and return every queued request of ``model`` (it is being unregistered)."""
        raise NotImplementedError

    def unqueue(self, p: PendingRequest, now_ns: int) -> None:
        """Take QUEUED ``p`` out of whatever holds it (it is being withdrawn); ``respond``
        answers it after."""
        raise NotImplementedError

    def on_residency_ready(self, view: DeviceView, model: str, now_ns: int) -> None:
        """A model became usable for inference on a device."""

    def on_residency_gone(self, view: DeviceView, model: str) -> None:
        """A model is no longer on a device (evicted, failed load, or the device left)."""

    def on_device_added(self, view: DeviceView, now_ns: int) -> None:
        """A device joined."""

    def observe_link(self, flight: Flight, result: ActionResult, now_ns: int) -> None:
        """A result of ``flight`` arrived: its timestamps say how long the links took."""

    def on_device_removed(self, view: DeviceView) -> None:
        """A device left (its worker was lost)."""

    # ----------------------------------------------------------------- helpers for policies

    def is_cold(self, model: str) -> bool:
        return not any(model in v.resident for v in self.devices.values())

    def unservable(self, model: str) -> str:
        """Why no connected device can ever run registered ``model`` (its worker does not serve
        it, no profile for its kind, too big for its cache), or "" if some device can."""
        why = self._unservable.get(model)
        if why is None:
            info = self.models[model]
            served = [v for v in self.devices.values() if v.models is None or model in v.models]
            if not served:
                why = f"no connected worker serves model {model!r}"
            elif any(
                (p := info.profile_for(v.kind.name)) is not None
                and p.pages_for(v.kind) <= v.kind.cache_pages
                for v in served
            ):
                why = ""
            else:
                why = f"no connected device can hold model {model!r}"
            self._unservable[model] = why
        return why

    def respond(
        self,
        p: PendingRequest,
        status: ResponseStatus,
        now_ns: int,
        detail: str = "",
        action_id: int = -1,
        batch_size: int = 0,
    ) -> None:
        if p.state == DONE:
            raise AssertionError(f"request {p.request.request_id} answered twice")
        p.state = DONE
        del self.pending[p.request.request_id]
        r = p.request
        self._responses.append(
            Response(r.request_id, r.model, status, now_ns, detail, action_id, batch_size, p.cold)
        )
        call = p.call
        if call is not None and call.failed is None and not status.delivered_result:
            call.failed = status
            self._failed_calls.append(call)

    def withdraw_failed_calls(self, now_ns: int) -> None:
        """Answer ``WITHDRAWN`` the queued samples of the calls that failed. Called where
        nothing is being iterated: after each event, and by a policy's ``plan`` before it plans
        anything a failed call could be part of."""
        failed = self._failed_calls
        self._failed_calls = []
        for call in failed:
            assert call.failed is not None
            why = _withdrawn_why(call.failed)
            for q in call.members:
                if q.state == QUEUED:
                    self.unqueue(q, now_ns)
                    self.respond(q, ResponseStatus.WITHDRAWN, now_ns, why)

    def _back_to_queue(self, p: PendingRequest, now_ns: int) -> None:
        """``p``'s Infer did not run: queued again, unless its call failed meanwhile."""
        call = p.call
        if call is not None and call.failed is not None:
            self.respond(p, ResponseStatus.WITHDRAWN, now_ns, _withdrawn_why(call.failed))
        else:
            self.requeue(p, now_ns)

    def new_action_id(self) -> int:
        a = self._next_action_id
        self._next_action_id = a + 1
        return a

    def send(
        self,
        action: Action,
        view: DeviceView,
        now_ns: int,
        requests: list[PendingRequest] | None = None,
    ) -> None:
        flight = Flight(action, view, now_ns, requests or [])
        self.inflight[action.action_id] = flight
        if type(action) is Infer:
            view.infers_in_flight += 1
            res = view.resident.get(action.model)
            if res is not None:
                res.infers_in_flight += 1
            self.infer_chain[view.device].append(flight)
            for p in flight.requests:
                p.state = IN_FLIGHT
        elif type(action) is LoadWeights:
            view.loads_in_flight += 1
        self._actions.append(action)

    def evict(self, view: DeviceView, model: str, now_ns: int) -> None:
        if view.release(model) is None:
            return
        self.on_residency_gone(view, model)
        self.send(EvictWeights(self.new_action_id(), view.device, model), view, now_ns)

    def make_room(
        self, view: DeviceView, pages: int, now_ns: int, has_demand: Callable[[str], bool]
    ) -> bool:
        """Evict least-recently-used idle models (loaded, nothing running, no demand) until
        ``pages`` are free on ``view``; evict nothing if that cannot free enough."""
        if view.free_pages >= pages:
            return True
        victims: list[str] = []
        freed = view.free_pages
        for name, res in view.resident.items():
            if not res.ready or res.infers_in_flight or has_demand(name):
                continue
            victims.append(name)
            freed += res.pages
            if freed >= pages:
                break
        if freed < pages:
            return False
        for name in victims:
            self.evict(view, name, now_ns)
        return True

    def start_load(
        self,
        view: DeviceView,
        model: str,
        pages: int,
        start_ns: int,
        latest_ns: int,
        now_ns: int,
    ) -> Residency | None:
        """Reserve pages and send a LoadWeights expected to start at ``start_ns``."""
        if view.models is not None and model not in view.models:
            # policies check first; this only keeps a bug from costing a worker round trip
            return None
        est = self.estimates[model][view.estimates_key].load.estimate_ns
        res = view.reserve(model, pages, ready=False, ready_at_ns=start_ns + est)
        if res is None:
            return None
        view.load_free_at_ns = start_ns + est
        action = LoadWeights(
            self.new_action_id(), view.device, model, now_ns, max(latest_ns, start_ns), est
        )
        self.send(action, view, now_ns)
        return res

    def infer_estimates(self, model: str, view: DeviceView) -> ModelEstimates | None:
        by_key = self.estimates.get(model)
        return None if by_key is None else by_key.get(view.estimates_key)

    def model_estimates(self, model: str) -> tuple[ModelEstimates, ...]:
        """Every estimate of registered ``model`` that can judge whether a request of it is
        feasible: one per device kind it has a profile for; with per-device estimates, one per
        connected device whose worker serves it (of a kind it has a profile for), or the kinds'
        priors while there is none (a cold model is then judged as with shared estimates)."""
        by_key = self.estimates[model]
        if not self.per_device_estimates:
            return tuple(by_key.values())
        found = tuple(
            by_key[v.estimates_key]
            for v in self.devices.values()
            if v.estimates_key in by_key and (v.models is None or model in v.models)
        )
        return found or tuple(self._prior_estimates[model].values())

    def _seeded(self, profile: ModelProfile) -> ModelEstimates:
        """Fresh estimates seeded from ``profile``."""
        return ModelEstimates(dict(profile.exec_ns), profile.load_ns, self.estimator_config)

    # ----------------------------------------------------------------- event handlers

    def _on_request_event(self, event: RequestArrived, now_ns: int) -> None:
        r = event.request
        if r.request_id in self.pending:
            raise InvalidInputError(f"request id {r.request_id} is already pending")
        self._arrive(PendingRequest(r, cold=False), now_ns)

    def _on_call_event(self, event: CallArrived, now_ns: int) -> None:
        ids = [r.request_id for r in event.requests]
        if len(set(ids)) < len(ids) or any(i in self.pending for i in ids):
            raise InvalidInputError(f"a call's request ids {ids} repeat or are already pending")
        call = Call()
        for i, r in enumerate(event.requests):
            if i:
                # each sample as an event of its own: an arrival may keep the scheduler settled
                # only if nothing since the last poll, the samples before it included, unsettled it
                self._settled_before_event = self._settled
                self._settled = False
            p = PendingRequest(r, cold=False)
            p.call = call
            call.members.append(p)
            if call.failed is not None:  # an earlier sample was refused at arrival
                self.pending[r.request_id] = p
                self.respond(p, ResponseStatus.WITHDRAWN, now_ns, _withdrawn_why(call.failed))
            else:
                self._arrive(p, now_ns)

    def _arrive(self, p: PendingRequest, now_ns: int) -> None:
        r = p.request
        self.pending[r.request_id] = p
        if r.model not in self.models:
            self.respond(p, ResponseStatus.MODEL_NOT_FOUND, now_ns, f"no model named {r.model!r}")
            return
        if r.deadline_ns <= r.arrival_ns:
            self.respond(
                p,
                ResponseStatus.INVALID_INPUT,
                now_ns,
                f"deadline {r.deadline_ns} ns is not after arrival {r.arrival_ns} ns",
            )
            return
        p.cold = self.is_cold(r.model)
        self.accept(p, now_ns)

    def _on_result_event(self, event: ActionFinished, now_ns: int) -> None:
        result = event.result
        flight = self.inflight.pop(result.action_id, None)
        if flight is None:
            return  # from a worker we already gave up on, or a duplicate: nothing waits for it
        self.observe_link(flight, result, now_ns)
        action = flight.action
        if type(action) is Infer:
            self._infer_done(flight, action, result, now_ns)
        elif type(action) is LoadWeights:
            self._load_done(flight, action, result, now_ns)

    def _infer_done(self, flight: Flight, action: Infer, result: ActionResult, now_ns: int) -> None:
        view = flight.device
        view.infers_in_flight -= 1
        res = view.resident.get(action.model)
        if res is not None:
            res.infers_in_flight -= 1
        chain = self.infer_chain[view.device]
        if chain and chain[0] is flight:  # the usual case: results come back in order
            chain.popleft()
        elif flight in chain:
            chain.remove(flight)
        # correct the timeline: what is still in flight runs back to back after this one ended
        t = max(result.ended_ns, now_ns) if not chain else result.ended_ns
        for f in chain:
            a = f.action
            assert type(a) is Infer
            t += a.expected_duration_ns
        view.infer_free_at_ns = t
        if result.status is ActionStatus.SUCCESS:
            est = self.infer_estimates(action.model, view)
            if est is not None and action.batch_size in est.exec:
                measured = result.exec_ns or (result.ended_ns - result.began_ns)
                est.exec[action.batch_size].observe(measured, now_ns)
            for p in flight.requests:
                if p.state == DONE:
                    continue
                ok = now_ns <= p.request.deadline_ns
                self.respond(
                    p,
                    ResponseStatus.SUCCESS if ok else ResponseStatus.LATE,
                    now_ns,
                    "" if ok else "result arrived after the deadline",
                    action.action_id,
                    action.batch_size,
                )
            return
        if result.status in (
            ActionStatus.WEIGHTS_NOT_PRESENT,
            ActionStatus.WEIGHTS_CHANGED_DURING_EXEC,
        ) and (res is not None and res.ready and res.infers_in_flight == 0):
            # our view was wrong: the worker does not hold the model (any more)
            view.release(action.model)
            self.on_residency_gone(view, action.model)
        for p in flight.requests:
            if p.state == DONE:
                continue
            if action.model not in self.models:
                self.respond(
                    p, ResponseStatus.MODEL_REMOVED, now_ns, f"model {action.model!r} was removed"
                )
                continue
            p.state = QUEUED
            self._back_to_queue(p, now_ns)

    def _load_done(
        self, flight: Flight, action: LoadWeights, result: ActionResult, now_ns: int
    ) -> None:
        view = flight.device
        view.loads_in_flight -= 1
        res = view.resident.get(action.model)
        if result.status is ActionStatus.SUCCESS:
            est = self.estimates.get(action.model, {}).get(view.estimates_key)
            if est is not None:
                est.load.observe(result.exec_ns or (result.ended_ns - result.began_ns), now_ns)
            if view.loads_in_flight == 0:
                view.load_free_at_ns = max(result.ended_ns, now_ns)
            if res is None:
                # forgotten while loading (unregistered, or no longer served by this worker):
                # our view has released its pages, so free them on the worker too
                self.send(
                    EvictWeights(self.new_action_id(), view.device, action.model), view, now_ns
                )
                return
            res.ready = True
            res.ready_at_ns = now_ns
            res.last_used_ns = now_ns
            self.on_residency_ready(view, action.model, now_ns)
            return
        if view.loads_in_flight == 0:
            view.load_free_at_ns = now_ns
        if result.status is ActionStatus.WEIGHTS_ALREADY_PRESENT and res is not None:
            res.ready = True
            res.ready_at_ns = now_ns
            self.on_residency_ready(view, action.model, now_ns)
            return
        if res is not None and not res.ready:
            view.release(action.model)
            self.on_residency_gone(view, action.model)

    def _on_worker_joined(self, event: WorkerJoined, now_ns: int) -> None:
        if event.worker in self.workers:
            self._on_worker_lost(WorkerLost(event.worker), now_ns)
        ids = []
        for info in event.devices:
            if info.device in self.devices:
                raise InvalidInputError(f"device {info.device} is already known")
            ids.append(info.device)
        served = None if event.models is None else frozenset(event.models)
        self.workers[event.worker] = tuple(ids)
        self.worker_models[event.worker] = served
        self._unservable.clear()
        for info in event.devices:
            self._add_device(info, served, now_ns)

    def _add_device(self, info: DeviceInfo, served: frozenset[str] | None, now_ns: int) -> None:
        if self.per_device_estimates:
            # device ids are unique among connected devices (a join checks), and with
            # per-device estimates no kind name is a key of ``estimates``
            view = DeviceView(info.device, info.kind, served, str(info.device))
            kind = info.kind.name
            for name, registered in self.models.items():
                profile = registered.profile_for(kind)
                if profile is not None:
                    # from the kind's profile, not from what an earlier device of this id
                    # measured: those were dropped when it left (``_on_worker_lost``)
                    self.estimates[name][view.estimates_key] = self._seeded(profile)
        else:
            view = DeviceView(info.device, info.kind, served)
        self.devices[info.device] = view
        self.infer_chain[info.device] = deque()
        self.on_device_added(view, now_ns)
        for model in info.resident_models:
            profile = (
                self.models[model].profile_for(info.kind.name)
                if (model in self.models and (served is None or model in served))
                else None
            )
            if (
                profile is None
                or view.reserve(model, profile.pages_for(info.kind), True, now_ns) is None
            ):
                # a model we cannot serve there: free its pages on the worker
                self.send(EvictWeights(self.new_action_id(), info.device, model), view, now_ns)
                continue
            self.on_residency_ready(view, model, now_ns)

    def _on_worker_models_changed(self, event: WorkerModelsChanged, now_ns: int) -> None:
        ids = self.workers.get(event.worker)
        if ids is None:
            raise InvalidInputError(f"no worker {event.worker!r} has joined")
        served = frozenset(event.models)
        self.worker_models[event.worker] = served
        self._unservable.clear()
        for device in ids:
            view = self.devices[device]
            view.models = served
            for model, res in list(view.resident.items()):
                if model in served:
                    continue
                # the worker no longer serves it: as at a join, free its pages there
                if res.ready:
                    self.evict(view, model, now_ns)
                else:  # loading: forget it now; the load's result evicts it on the worker
                    view.release(model)
                    self.on_residency_gone(view, model)

    def _on_worker_lost(self, event: WorkerLost, now_ns: int) -> None:
        ids = self.workers.pop(event.worker, ())
        self.worker_models.pop(event.worker, None)
        self._unservable.clear()
        lost = set(ids)
        for action_id, flight in list(self.inflight.items()):
            if flight.action.device not in lost:
                continue
            del self.inflight[action_id]
            for p in flight.requests:
                if p.state == DONE:
                    continue
                p.state = QUEUED
                p.lost = True
                self._back_to_queue(p, now_ns)
        for device in ids:
            view = self.devices.pop(device)
            self.infer_chain.pop(device, None)
            for model in list(view.resident):
                view.release(model)
                self.on_residency_gone(view, model)
            if self.per_device_estimates:
                # a worker that joins again under the same id starts from its kind's profile:
                # it may be a restarted process, on another host or beside other load, and
                # what the one that left measured need not hold for it (keeping them would
                # also keep every device id ever seen)
                key = view.estimates_key
                for by_key in self.estimates.values():
                    by_key.pop(key, None)
            self.on_device_removed(view)

    def _on_model_registered(self, event: ModelRegistered, now_ns: int) -> None:
        info = event.model
        if info.name in self.models:
            raise InvalidInputError(f"model {info.name!r} is already registered")
        if not info.profiles:
            raise InvalidInputError(f"model {info.name!r} has no profile")
        self.models[info.name] = info
        by_kind = {p.device_kind: self._seeded(p) for p in info.profiles}
        if not self.per_device_estimates:
            self.estimates[info.name] = by_kind
            return
        self._prior_estimates[info.name] = by_kind
        by_device: dict[str, ModelEstimates] = {}
        for view in self.devices.values():
            profile = info.profile_for(view.kind_name)
            if profile is not None:
                by_device[view.estimates_key] = self._seeded(profile)
        self.estimates[info.name] = by_device

    def _on_model_removed(self, event: ModelRemoved, now_ns: int) -> None:
        if event.name not in self.models:
            raise InvalidInputError(f"no model named {event.name!r} to remove")
        for p in self.drop_queued(event.name):
            self.respond(
                p, ResponseStatus.MODEL_REMOVED, now_ns, f"model {event.name!r} was removed"
            )
        del self.models[event.name]
        del self.estimates[event.name]
        self._prior_estimates.pop(event.name, None)
        self._unservable.pop(event.name, None)
        for view in self.devices.values():
            res = view.resident.get(event.name)
            if res is not None and res.ready:
                self.evict(view, event.name, now_ns)
            elif res is not None:
                # still loading: forget it now; the load's result evicts it on the worker
                view.release(event.name)
                self.on_residency_gone(view, event.name)

    def _on_withdrawn(self, event: RequestsWithdrawn, now_ns: int) -> None:
        for rid in event.request_ids:
            p = self.pending.get(rid)
            if p is None or p.state != QUEUED:
                continue
            self.unqueue(p, now_ns)
            self.respond(p, ResponseStatus.WITHDRAWN, now_ns, event.why)
