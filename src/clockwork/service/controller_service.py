"""The controller service: an asyncio driver of the sans-IO scheduler (DESIGN.md s.2).

One task per configured worker address keeps a connection to it:

1. connect (retrying with exponential backoff, ``connect_backoff_s``);
2. handshake: our ``Hello`` (role ``CONTROLLER``), the worker's ``Hello`` (its id);
3. clock sync: ``sync_pings`` ping/pong rounds, every ping carrying our minimum one-way delta, so
   that *both* sides' ``ClockSync`` is ready before any action is sent (the worker refuses actions
   until then);
4. ``GetWorkerState`` -> ``ModelRegistered`` for each model not known yet, then
   ``WorkerJoined(worker, devices, models)`` (the models it serves, and its devices with the
   models already resident: a restarted controller re-learns them and does not reload them);
5. serve: a receive loop feeds ``ActionFinished`` for each result (the worker has converted its
   times into our clock), a sender drains the link's queue, and a pinger sends a ``Ping`` every
   ``ping_interval_s``. A worker silent for ``silence_pings`` ping intervals is closed.

``rescan_models`` asks every joined worker to rescan its repository (``RescanRepository``); a
``WorkerState`` that arrives in step 5 is such a rescan's answer (matched in order of asking), and
each model in it not known yet is registered.

When the connection ends (disconnect, silence, protocol error), ``WorkerLost`` is fed (the
scheduler re-plans the requests that were in flight there, or answers ``WORKER_LOST``) and the
task goes back to step 1: a worker that comes back re-joins.

The scheduling rule: after every event, ``poll(now)``; each action goes to its worker's queue
(an ``Infer`` with the inputs of its requests), except one whose ``latest_ns`` has already passed,
which is answered at once with a synthetic ``TOO_LATE`` result fed back to the scheduler (also
checked again just before the frame is written); responses resolve the ``submit`` futures; a
timer wakes the scheduler at ``wake_at_ns``.

What this costs per request is the controller's capacity, so the hot path batches: requests
submitted and results received in the same loop iteration are fed to the scheduler together and
cost one poll; the actions of one poll are written to each worker in one write, at once when its
connection can take them without waiting (else through the link's queue, whose sender drains it
in batches); the wake-up timer is re-armed only when the wake-up time changes, and never fires
before it (uvloop's millisecond timers otherwise fire up to 1.5 ms early, and each early wake-up
cost a poll that found nothing due).

``submit`` (and ``submit_nowait``) is the public API; the front door (``clockwork.frontend``)
calls it for every request it accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from clockwork.core.actions import Action, ActionResult, ActionStatus, EvictWeights, Infer
from clockwork.core.clock_sync import ClockSync
from clockwork.core.errors import ClockworkError
from clockwork.core.events import (
    ActionFinished,
    DeviceInfo,
    Event,
    ModelInfo,
    ModelRegistered,
    ModelRemoved,
    RequestArrived,
    WorkerJoined,
    WorkerLost,
    WorkerModelsChanged,
)
from clockwork.core.requests import InferRequest, Response, ResponseStatus
from clockwork.core.scheduler import Scheduler
from clockwork.core.units import NS_PER_MS, NS_PER_S
from clockwork.transport import (
    PROTOCOL_VERSION,
    ActionResultMsg,
    ConnectionClosedError,
    GetWorkerState,
    Hello,
    InferInputs,
    InferMsg,
    InferOutputs,
    Message,
    Ping,
    Pong,
    ProtocolError,
    Role,
    StreamConnection,
    WorkerState,
    action_message,
    connect,
    pong_for,
)
from clockwork.transport.messages import RescanRepository

log = logging.getLogger("clockwork.service.controller")

#: the deadline of a request that names none, for a model without a default SLO
DEFAULT_SLO_NS = 100 * NS_PER_MS

Arrays = dict[str, npt.NDArray[np.generic]]


class ControllerClosedError(ClockworkError):
    """``submit`` on a closed controller, or a request still waiting when it closed."""


@dataclass
class ControllerStats:
    """Counters for status lines and tests."""

    submitted: int = 0
    responses: Counter[ResponseStatus] = field(default_factory=Counter)
    actions_sent: Counter[str] = field(default_factory=Counter)
    too_late_unsent: int = 0
    joins: int = 0
    losses: int = 0

    @property
    def answered(self) -> int:
        return sum(self.responses.values())

    @property
    def successes(self) -> int:
        return self.responses[ResponseStatus.SUCCESS]

    @property
    def attainment(self) -> float:
        """Successes per response (1.0 before any response)."""
        n = self.answered
        return self.successes / n if n else 1.0


class _Link:
    """One configured worker address and its current connection."""

    __slots__ = ("conn", "host", "last_rx_ns", "port", "queue", "rescans", "task", "worker")

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.conn: StreamConnection | None = None
        self.worker: str | None = None  # set while joined
        self.queue: asyncio.Queue[Message] | None = None
        self.last_rx_ns = 0
        self.task: asyncio.Task[None] | None = None
        # one per RescanRepository sent on this connection and not answered yet, oldest first
        # (a worker answers them in order); one given up on stays, cancelled, until its answer
        self.rescans: deque[asyncio.Future[WorkerState]] = deque()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class _HandshakeError(Exception):
    pass


class ControllerService:
    """Drive ``policy`` (a sans-IO ``Scheduler``) against the workers at ``workers``
    (``(host, port)`` each). See the module docstring. Call ``start`` in the event loop, then
    ``submit``; ``close`` at the end.
    """

    def __init__(
        self,
        policy: Scheduler,
        workers: Sequence[tuple[str, int]],
        clock_ns: Callable[[], int] = time.monotonic_ns,
        *,
        controller_id: str = "controller",
        ping_interval_s: float = 0.025,
        silence_pings: int = 8,
        sync_pings: int = 5,
        connect_backoff_s: tuple[float, float] = (0.05, 2.0),
        handshake_timeout_s: float = 5.0,
        default_slo_ns: int = DEFAULT_SLO_NS,
        on_response: Callable[[Response], None] | None = None,
        on_request: Callable[[InferRequest], None] | None = None,
        on_action_sent: Callable[[Action, int], None] | None = None,
        on_action_result: Callable[[ActionResult, int], None] | None = None,
        on_worker_joined: Callable[[str, tuple[DeviceInfo, ...]], None] | None = None,
        on_worker_lost: Callable[[str], None] | None = None,
    ) -> None:
        if ping_interval_s <= 0 or silence_pings < 1 or sync_pings < 1:
            raise ValueError("ping_interval_s > 0, silence_pings >= 1 and sync_pings >= 1 required")
        self.scheduler = policy
        self.controller_id = controller_id
        self.ping_interval_s = ping_interval_s
        self.silence_pings = silence_pings
        self.sync_pings = sync_pings
        self.connect_backoff_s = connect_backoff_s
        self.handshake_timeout_s = handshake_timeout_s
        self.default_slo_ns = default_slo_ns
        self.on_response = on_response
        # telemetry hooks (observers only; an exception they raise is logged and ignored):
        # each request as accepted by ``submit``; each action as the scheduler emitted it, with
        # the controller time; each result fed back to the scheduler (from a worker, converted to
        # our clock, or synthetic: TOO_LATE unsent, INVALID_INPUT unsendable), with the time
        self.on_request = on_request
        self.on_action_sent = on_action_sent
        self.on_action_result = on_action_result
        # each worker that joined, with its devices and their resident models; each lost
        self.on_worker_joined = on_worker_joined
        self.on_worker_lost = on_worker_lost
        self.stats = ControllerStats()
        self._clock = clock_ns
        self._links = [_Link(h, p) for h, p in workers]
        self._joined: dict[str, _Link] = {}
        self._models: dict[str, ModelInfo] = {}
        # unregistered by ``remove_model``: a worker that (re)joins does not bring them back
        self._removed: dict[str, ModelInfo] = {}
        self._next_request_id = 0
        self._futures: dict[int, asyncio.Future[tuple[Response, Arrays | None]]] = {}
        self._inputs: dict[int, InferInputs] = {}
        # Infer action id -> (worker, request ids), while in flight
        self._infers: dict[int, tuple[str, tuple[int, ...]]] = {}
        # request id -> (action id, outputs) of a successful Infer, until the response
        self._outputs: dict[int, tuple[int, InferOutputs]] = {}
        self._wake: asyncio.TimerHandle | None = None
        self._wake_ns: int | None = None  # what ``_wake`` is armed for
        self._ms_timers: bool | None = None  # whether the loop's timers count whole ms (uvloop)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._in_scheduler = False
        self._deferred: list[Event] = []
        # a ``_run`` of the deferred events is scheduled for the end of this loop iteration
        self._run_soon = False
        # the messages of the actions dispatched by the current ``_run``, per link: written at
        # its end, one write per link (or queued to the link's sender if that would wait)
        self._outbox: dict[_Link, list[Message]] = {}

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start one connection task per worker address; returns at once."""
        if self._loop is not None:
            raise RuntimeError("controller already started")
        self._loop = asyncio.get_running_loop()
        for link in self._links:
            link.task = asyncio.create_task(self._link_loop(link), name=f"link {link.address}")

    @property
    def workers(self) -> tuple[str, ...]:
        """The ids of the workers joined now."""
        return tuple(self._joined)

    @property
    def configured_workers(self) -> int:
        """How many worker addresses this controller connects to."""
        return len(self._links)

    @property
    def models(self) -> Mapping[str, ModelInfo]:
        return self._models

    @property
    def removed_models(self) -> Mapping[str, ModelInfo]:
        """Models unregistered by ``remove_model`` (workers still hold them on disk)."""
        return self._removed

    def remove_model(self, name: str) -> None:
        """Stop serving ``name``: the scheduler answers its waiting requests with
        ``MODEL_REMOVED`` and evicts it; workers that (re)join do not register it again until
        ``restore_model``. ``KeyError`` if no such model is registered."""
        info = self._models.pop(name)
        self._removed[name] = info
        self._run(ModelRemoved(name))

    def restore_model(self, name: str) -> None:
        """Serve again a model unregistered by ``remove_model`` (``KeyError`` if it was not)."""
        info = self._removed.pop(name)
        self._models[name] = info
        self._run(ModelRegistered(info))

    async def rescan_models(self, timeout_s: float = 600.0) -> list[str]:
        """Ask every joined worker to rescan its model repository, wait for their answers (at
        most ``timeout_s``: a rescan may profile new models), and register each model they
        now serve that is not known yet (nor removed by ``remove_model``). Returns the names
        registered, sorted. A worker that does not answer in time, or is lost meanwhile, is
        skipped (its answer, should it come later, still registers its new models)."""
        if self._closing or self._loop is None:
            raise ControllerClosedError("controller is not running")
        waiting: dict[asyncio.Future[WorkerState], str] = {}
        for worker, link in list(self._joined.items()):
            if link.queue is None:
                continue
            fut: asyncio.Future[WorkerState] = self._loop.create_future()
            link.rescans.append(fut)
            link.queue.put_nowait(RescanRepository(0))
            waiting[fut] = worker
        if not waiting:
            return []
        done, late = await asyncio.wait(waiting, timeout=timeout_s)
        for fut in late:
            log.warning(
                "worker %s: no rescan answer within %.1f s; skipped", waiting[fut], timeout_s
            )
            fut.cancel()
        added: list[str] = []
        for fut in done:
            if fut.cancelled():
                log.warning("worker %s: lost during the rescan; skipped", waiting[fut])
                continue
            added += self._register_new(fut.result())
        return sorted(added)

    def _register_new(self, state: WorkerState) -> list[str]:
        """Register the models of ``state`` not known yet (nor removed), then tell the scheduler
        that its worker, if still joined, now serves exactly the models listed (or it would never
        place the new ones there); return the names registered."""
        added = []
        for model in state.models:
            if model.name in self._models or model.name in self._removed:
                continue
            self._models[model.name] = model
            self._run(ModelRegistered(model))
            added.append(model.name)
        if added:
            log.info("worker %s: new models registered: %s", state.worker, ", ".join(added))
        if state.worker in self._joined:
            # removed models stay listed: a restore_model makes them servable there again
            self._run(WorkerModelsChanged(state.worker, tuple(m.name for m in state.models)))
        return added

    def _on_worker_state(self, worker: str, link: _Link, state: WorkerState) -> None:
        """A rescan's answer: to the oldest rescan waiting on ``link``, else register its new
        models here (its rescan gave up on it, or nobody asked: a worker's state is news)."""
        if state.worker != worker:
            log.warning("worker %s: ignoring a WorkerState of worker %r", worker, state.worker)
            return
        if link.rescans:
            fut = link.rescans.popleft()
            if not fut.done():
                fut.set_result(state)
                return
        self._register_new(state)

    async def wait_workers(self, n: int, timeout_s: float = 10.0) -> None:
        """Wait until at least ``n`` workers are joined (``TimeoutError`` after ``timeout_s``)."""
        async with asyncio.timeout(timeout_s):
            while len(self._joined) < n:
                await asyncio.sleep(0.005)

    async def close(self) -> None:
        """Disconnect from every worker; requests still waiting get ``ControllerClosedError``."""
        if self._closing:
            return
        self._closing = True
        tasks = [link.task for link in self._links if link.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        for fut in self._futures.values():
            if not fut.done():
                fut.set_exception(ControllerClosedError("controller closed"))
        self._futures.clear()
        self._inputs.clear()
        self._outputs.clear()

    # ----------------------------------------------------------------- the public API

    async def submit(
        self,
        model: str,
        inputs: Mapping[str, npt.NDArray[np.generic]] | None = None,
        *,
        deadline_ns: int | None = None,
        timeout_ns: int | None = None,
        priority: int = 0,
        spent_ns: int = 0,
    ) -> tuple[Response, Arrays | None]:
        """Submit one request and wait for its single response. The deadline is ``deadline_ns``
        (absolute, controller clock), else now + ``timeout_ns``, else now + the model's default
        SLO, else now + ``default_slo_ns``; less ``spent_ns``, the part of a timeout spent
        outside the controller (the front door's decoding and answer). Returns the response
        and, for a result delivered (``SUCCESS``/``LATE``), the outputs (None otherwise, or when
        the worker sent none)."""
        return await self.submit_nowait(
            model,
            inputs,
            deadline_ns=deadline_ns,
            timeout_ns=timeout_ns,
            priority=priority,
            spent_ns=spent_ns,
        )

    def submit_nowait(
        self,
        model: str,
        inputs: Mapping[str, npt.NDArray[np.generic]] | None = None,
        *,
        deadline_ns: int | None = None,
        timeout_ns: int | None = None,
        priority: int = 0,
        spent_ns: int = 0,
    ) -> asyncio.Future[tuple[Response, Arrays | None]]:
        """``submit`` without a coroutine: the future of its result (for a caller that submits
        many requests, e.g. a load generator, a task per request costs more than the controller
        spends scheduling it). Cancelling the future abandons the wait, not the request."""
        if self._closing or self._loop is None:
            raise ControllerClosedError("controller is not running")
        now = self._clock()
        if deadline_ns is None:
            if timeout_ns is None:
                info = self._models.get(model)
                slo = info.default_slo_ns if info is not None else None
                timeout_ns = slo if slo is not None else self.default_slo_ns
            # a timeout used up before the controller saw it is infeasible, not invalid
            deadline_ns = now + max(1, timeout_ns - spent_ns)
        rid = self._next_request_id
        self._next_request_id += 1
        fut: asyncio.Future[tuple[Response, Arrays | None]] = self._loop.create_future()
        self._futures[rid] = fut
        if inputs is not None:
            self._inputs[rid] = InferInputs.from_arrays(inputs)
        self.stats.submitted += 1
        request = InferRequest(rid, model, now, deadline_ns, priority)
        hook = self.on_request
        if hook is not None:
            # ``_notify`` inlined here and below: these hooks run for every request and action
            try:
                hook(request)
            except Exception:
                log.exception("telemetry hook %r raised", hook)
        self._run_later(RequestArrived(request))
        return fut

    def pending(self) -> int:
        """Requests submitted and not answered yet."""
        return len(self._futures)

    # ----------------------------------------------------------------- scheduling

    def _run_later(self, event: Event) -> None:
        """Feed ``event`` at the end of this loop iteration (or sooner, with any ``_run``), so
        that the requests and results that arrive together cost one poll, not one each."""
        self._deferred.append(event)
        if not self._run_soon and self._loop is not None:
            self._run_soon = True
            self._loop.call_soon(self._run_deferred)

    def _run_deferred(self) -> None:
        self._run_soon = False
        if self._deferred:  # else a ``_run`` since took them
            self._run()

    def _run(self, event: Event | None = None) -> None:
        """Feed ``event``, poll, and act on the output, until no synthetic event is left."""
        if event is not None:
            self._deferred.append(event)
        if self._in_scheduler:  # re-entered from a response callback: the outer loop goes on
            return
        self._in_scheduler = True
        try:
            while True:
                now = self._clock()
                events, self._deferred = self._deferred, []
                hook = self.on_action_result
                for ev in events:
                    if hook is not None and type(ev) is ActionFinished:
                        try:
                            hook(ev.result, now)
                        except Exception:
                            log.exception("telemetry hook %r raised", hook)
                    try:
                        self.scheduler.handle(ev, now)
                    except ClockworkError as e:
                        log.error("scheduler refused %s: %s", type(ev).__name__, e)
                out = self.scheduler.poll(now)
                for action in out.actions:
                    self._dispatch(action, now)
                for response in out.responses:
                    self._respond(response)
                self._set_wake(out.wake_at_ns, now)
                if not self._deferred:
                    break
        finally:
            self._in_scheduler = False
        if self._outbox:
            self._flush_outbox()

    def _flush_outbox(self) -> None:
        """Send what ``_dispatch`` put in the outbox: at once where the connection can take it
        without waiting and nothing is queued before it (which keeps each link's order), else
        through the link's queue and sender task."""
        outbox, self._outbox = self._outbox, {}
        for link, msgs in outbox.items():
            queue, conn = link.queue, link.conn
            if queue is None or conn is None:
                continue  # lost since: the scheduler hears it from the link task
            if queue.empty():
                try:
                    failed = conn.send_nowait(msgs)
                except ConnectionClosedError:
                    continue  # the link task sees the connection closed and reports the loss
                if failed is not None:
                    self._sent(conn, msgs, failed)
                    continue
            for msg in msgs:
                queue.put_nowait(msg)

    def _sent(
        self,
        conn: StreamConnection,
        msgs: Sequence[Message],
        failed: Sequence[tuple[Message, ProtocolError]],
    ) -> None:
        """Count the actions among ``msgs`` that were sent; fail those that could not be."""
        unsent: set[int] = set()
        for msg, e in failed:
            unsent.add(id(msg))
            log.error("%s: could not send %s: %s", conn.name, type(msg).__name__, e)
            action = getattr(msg, "action", None)
            if action is not None:
                now = self._clock()
                self._run(
                    ActionFinished(
                        ActionResult(
                            action.action_id,
                            action.device,
                            action.model,
                            ActionStatus.INVALID_INPUT,
                            now,
                            now,
                            now,
                            detail=str(e),
                        )
                    )
                )
        sent = self.stats.actions_sent
        for msg in msgs:
            action = getattr(msg, "action", None)
            if action is not None and id(msg) not in unsent:
                sent[type(action).__name__] += 1

    def _dispatch(self, action: Action, now: int) -> None:
        hook = self.on_action_sent
        if hook is not None:
            try:
                hook(action, now)
            except Exception:
                log.exception("telemetry hook %r raised", hook)
        worker = action.device.worker
        if not isinstance(action, EvictWeights) and action.latest_ns < now:
            self.stats.too_late_unsent += 1
            self._deferred.append(ActionFinished(_too_late(action, now)))
            return
        link = self._joined.get(worker)
        if link is None or link.queue is None:
            # the scheduler learns of the loss from the link task, which requeues this action
            log.debug("action %d for %s not sent: worker not connected", action.action_id, worker)
            return
        msg: Message
        if type(action) is Infer:
            self._infers[action.action_id] = (worker, action.request_ids)
            inputs: tuple[InferInputs, ...] = ()
            if self._inputs and any(rid in self._inputs for rid in action.request_ids):
                inputs = tuple(self._inputs.get(rid, InferInputs()) for rid in action.request_ids)
            msg = InferMsg(0, action, inputs)
        else:
            msg = action_message(action)
        msgs = self._outbox.get(link)
        if msgs is None:
            self._outbox[link] = [msg]
        else:
            msgs.append(msg)

    def _respond(self, response: Response) -> None:
        rid = response.request_id
        self.stats.responses[response.status] += 1
        self._inputs.pop(rid, None)
        stashed = self._outputs.pop(rid, None)
        outputs: Arrays | None = None
        if (
            stashed is not None
            and stashed[0] == response.action_id
            and response.status.delivered_result
        ):
            outputs = stashed[1].to_arrays()
        fut = self._futures.pop(rid, None)
        if fut is not None and not fut.done():
            fut.set_result((response, outputs))
        if self.on_response is not None:
            try:
                self.on_response(response)
            except Exception:
                log.exception("on_response raised")

    def _set_wake(self, wake_ns: int | None, now: int) -> None:
        if self._wake is not None:
            if wake_ns == self._wake_ns:
                return  # the timer is armed for it already: no need to make a new one
            self._wake.cancel()
            self._wake = None
        self._wake_ns = wake_ns
        if wake_ns is None or self._loop is None or self._closing:
            return
        self._wake = self._loop.call_later(
            self._timer_delay_s(self._loop, wake_ns - now), self._on_wake
        )

    def _timer_delay_s(self, loop: asyncio.AbstractEventLoop, delay_ns: int) -> float:
        """What to give ``call_later`` for a timer due in ``delay_ns`` that must not fire
        before (a timer that fires early costs a wake-up and a poll for nothing)."""
        if self._ms_timers is None:
            self._ms_timers = type(loop).__module__.startswith("uvloop")
        if not self._ms_timers:
            return max(0, delay_ns) / NS_PER_S
        # uvloop's timers fire when its cached clock (``loop.time()``, in whole ms, up to 1 ms
        # behind) reaches that clock plus the delay rounded to whole ms: up to 1.5 ms early.
        # Counted from that clock and rounded up, the delay ends at or after the due time (at
        # most 1 ms after).
        lag_ns = max(0, time.monotonic_ns() - round(loop.time() * NS_PER_S))
        return -(-(lag_ns + max(0, delay_ns)) // NS_PER_MS) / 1000

    def _on_wake(self) -> None:
        self._wake = None
        wake_ns = self._wake_ns
        if wake_ns is not None and self._loop is not None and not self._closing:
            early_ns = wake_ns - self._clock()
            if early_ns > 0:
                # fired before it is due after all: a poll now would find nothing to do and
                # ask for this same wake-up again (with timers that fire early, a busy loop of
                # polls until it is due); wait for the rest instead
                self._wake = self._loop.call_later(
                    self._timer_delay_s(self._loop, early_ns), self._on_wake
                )
                return
        self._run()

    def _on_result(self, msg: ActionResultMsg) -> None:
        result = msg.result
        infer = self._infers.pop(result.action_id, None)
        if infer is not None and result.ok and msg.outputs:
            rids = infer[1]
            if len(msg.outputs) == len(rids):
                for rid, out in zip(rids, msg.outputs, strict=True):
                    if rid in self._futures:  # not answered yet (e.g. refused at its deadline)
                        self._outputs[rid] = (result.action_id, out)
            else:
                log.warning(
                    "action %d: %d outputs for %d requests; dropped",
                    result.action_id,
                    len(msg.outputs),
                    len(rids),
                )
        # the last result of what was read from the socket, with nothing else waiting to be
        # fed: run now (as a deferred run would, one loop iteration later); else wait for the
        # rest, which this same task reads without waiting, and feed them all to one poll
        link = self._joined.get(result.device.worker)
        conn = link.conn if link is not None else None
        if conn is not None and not self._deferred and not conn.has_buffered_frame():
            self._run(ActionFinished(result))
        else:
            self._run_later(ActionFinished(result))

    # ----------------------------------------------------------------- worker links

    async def _link_loop(self, link: _Link) -> None:
        low, high = self.connect_backoff_s
        backoff = low
        while not self._closing:
            try:
                conn = await connect(
                    link.host, link.port, clock_ns=self._clock, clock_sync=ClockSync()
                )
            except OSError as e:
                log.debug("worker %s: connect failed: %s", link.address, e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, high)
                continue
            link.conn = conn
            try:
                await self._session(link, conn)
                backoff = low
            except TimeoutError:
                log.warning(
                    "worker %s: no answer within %.1f s during set-up",
                    link.address,
                    self.handshake_timeout_s,
                )
            except (ConnectionClosedError, ProtocolError, _HandshakeError) as e:
                log.warning("worker %s: %s: %s", link.address, type(e).__name__, e)
            finally:
                conn.close("controller closing" if self._closing else "session ended")
                self._lost(link, conn.close_reason or "connection ended")
                link.conn = None
                with contextlib.suppress(Exception):
                    await conn.wait_closed()
            if not self._closing:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, high)

    async def _recv(self, conn: StreamConnection, kind: type[Message]) -> Message:
        """The next message of type ``kind`` during set-up (others are ignored)."""
        async with asyncio.timeout(self.handshake_timeout_s):
            while True:
                msg = await conn.recv()
                if isinstance(msg, kind):
                    return msg
                log.debug("%s: ignoring %s during set-up", conn.name, type(msg).__name__)

    async def _session(self, link: _Link, conn: StreamConnection) -> None:
        await conn.send(Hello(0, PROTOCOL_VERSION, Role.CONTROLLER, self.controller_id))
        async with asyncio.timeout(self.handshake_timeout_s):
            hello = await conn.recv()
        if not isinstance(hello, Hello):
            raise _HandshakeError(f"expected Hello, got {type(hello).__name__}")
        if hello.role is not Role.WORKER or hello.protocol_version != PROTOCOL_VERSION:
            raise _HandshakeError(
                f"peer is a {hello.role.value} speaking protocol "
                f"{hello.protocol_version}, expected a worker speaking "
                f"{PROTOCOL_VERSION}"
            )
        worker = hello.sender_id
        other = self._joined.get(worker)
        if other is not None and other is not link:
            raise _HandshakeError(f"worker id {worker!r} is already joined from {other.address}")
        sync = conn.clock_sync
        assert sync is not None
        seq = 0
        for _ in range(self.sync_pings):
            await conn.send(Ping(0, seq, sync.local_min_delta_ns))
            seq += 1
            await self._recv(conn, Pong)
        if not sync.ready:
            raise _HandshakeError("clock not synchronised after the sync pings")
        await conn.send(GetWorkerState(0))
        state = await self._recv(conn, WorkerState)
        assert isinstance(state, WorkerState)
        for info in state.devices:
            if info.device.worker != worker:
                raise _HandshakeError(f"worker {worker!r} reports device {info.device}")
        log.info(
            "worker %s (%s) synced: offset %+d ns, rtt %d ns, %d devices, %d models",
            worker,
            link.address,
            sync.offset_ns,
            sync.rtt_ns,
            len(state.devices),
            len(state.models),
        )
        if self._closing:
            return
        queue: asyncio.Queue[Message] = asyncio.Queue()
        link.queue = queue
        link.worker = worker
        link.last_rx_ns = self._clock()
        self._joined[worker] = link
        self.stats.joins += 1
        for model in state.models:
            if model.name in self._removed:
                continue
            if model.name not in self._models:
                self._models[model.name] = model
                self._run(ModelRegistered(model))
        # with the models it serves: a model only some workers have is loaded on those only
        self._run(WorkerJoined(worker, state.devices, tuple(m.name for m in state.models)))
        if self.on_worker_joined is not None:
            _notify(self.on_worker_joined, worker, state.devices)
        sender = asyncio.create_task(self._send_loop(conn, queue), name=f"send {worker}")
        pinger = asyncio.create_task(self._ping_loop(link, conn, queue, seq), name=f"ping {worker}")
        try:
            async for msg in conn:
                link.last_rx_ns = self._clock()
                if isinstance(msg, ActionResultMsg):
                    self._on_result(msg)
                elif isinstance(msg, Ping):
                    queue.put_nowait(pong_for(msg, sync))
                elif isinstance(msg, WorkerState):
                    self._on_worker_state(worker, link, msg)
                elif not isinstance(msg, Pong):
                    log.warning("worker %s: ignoring unexpected %s", worker, type(msg).__name__)
        finally:
            sender.cancel()
            pinger.cancel()
            await asyncio.gather(sender, pinger, return_exceptions=True)

    def _lost(self, link: _Link, reason: str) -> None:
        worker = link.worker
        link.worker = None
        link.queue = None
        # rescans waiting on this connection will get no answer on it
        while link.rescans:
            link.rescans.popleft().cancel()
        if worker is None or self._joined.get(worker) is not link:
            return
        del self._joined[worker]
        self.stats.losses += 1
        log.log(
            logging.INFO if self._closing else logging.WARNING,
            "worker %s (%s) lost: %s",
            worker,
            link.address,
            reason,
        )
        for action_id, (w, _) in list(self._infers.items()):
            if w == worker:
                del self._infers[action_id]
        self._run(WorkerLost(worker))
        if self.on_worker_lost is not None:
            _notify(self.on_worker_lost, worker)

    async def _send_loop(self, conn: StreamConnection, queue: asyncio.Queue[Message]) -> None:
        stats = self.stats
        while True:
            # everything queued by the time this task runs goes out in one write
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            now = self._clock()
            ready: list[Message] = []
            too_late = False
            for msg in batch:
                action = getattr(msg, "action", None)
                if (
                    action is not None
                    and type(action) is not EvictWeights
                    and action.latest_ns < now
                ):
                    stats.too_late_unsent += 1
                    self._deferred.append(ActionFinished(_too_late(action, now)))
                    too_late = True
                else:
                    ready.append(msg)
            if ready:
                try:
                    failed = await conn.send_many(ready)
                except ConnectionClosedError:
                    if too_late:
                        self._run()
                    return
                self._sent(conn, ready, failed)
            # only now: the actions this schedules must not overtake those in ``ready``
            if too_late:
                self._run()

    async def _ping_loop(
        self, link: _Link, conn: StreamConnection, queue: asyncio.Queue[Message], seq: int
    ) -> None:
        interval_ns = round(self.ping_interval_s * NS_PER_S)
        sync = conn.clock_sync
        while True:
            await asyncio.sleep(self.ping_interval_s)
            silent_ns = self._clock() - link.last_rx_ns
            if silent_ns > self.silence_pings * interval_ns:
                conn.abort(f"worker silent for {silent_ns / NS_PER_S:.2f} s")
                return
            queue.put_nowait(Ping(0, seq, None if sync is None else sync.local_min_delta_ns))
            seq += 1


def _too_late(action: Action, now: int) -> ActionResult:
    return ActionResult(
        action.action_id,
        action.device,
        action.model,
        ActionStatus.TOO_LATE,
        now,
        now,
        now,
        detail="window passed before the action was sent",
    )


def _notify(hook: Callable[..., None], *args: object) -> None:
    """Call a telemetry hook; what it raises is logged, never propagated."""
    try:
        hook(*args)
    except Exception:
        log.exception("telemetry hook %r raised", hook)
