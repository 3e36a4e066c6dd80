"""The controller service: an asyncio driver of the sans-IO scheduler (DESIGN.md s.2).

It is assembled from pieces with one job each:

- ``worker_links.WorkerLink``: one per configured worker address; connects (through an injected
  ``Connector``: TCP by default, in-memory in tests), handshakes, syncs clocks, pings, and
  reports joins, results and losses here;
- ``scheduling_pump.SchedulingPump``: the timed loop; feeds the scheduler its events, polls it,
  sends the actions to the links and answers the requests;
- ``request_book.RequestBook``: each request's future, inputs and outputs;
- ``observers.Observers``: the telemetry hooks.

This class keeps the models the workers serve, and offers the public API: ``submit`` (and
``submit_nowait``) for every request the front door accepts, model removal and rescans,
``wait_workers`` and ``close``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from clockwork.core.actions import Action, ActionResult
from clockwork.core.errors import ClockworkError
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
from clockwork.core.requests import InferRequest, Response
from clockwork.core.scheduler import Scheduler
from clockwork.core.units import DEFAULT_SLO_MS, ms_to_ns
from clockwork.service.controller_stats import ControllerStats
from clockwork.service.loop_heartbeat import LoopHeartbeat
from clockwork.service.observers import Observers
from clockwork.service.request_book import Answer, Arrays, RequestBook
from clockwork.service.scheduling_pump import SchedulingPump
from clockwork.service.worker_links import Connector, LinkTiming, TcpConnector, WorkerLink
from clockwork.transport import ActionResultMsg, InferInputs, WorkerState
from clockwork.transport.messages import RescanRepository

__all__ = [
    "DEFAULT_SLO_NS",
    "Arrays",
    "ControllerClosedError",
    "ControllerService",
    "ControllerStats",
]

log = logging.getLogger("clockwork.service.controller")

#: the deadline of a request that names none, for a model without a default SLO
DEFAULT_SLO_NS = ms_to_ns(DEFAULT_SLO_MS)


class ControllerClosedError(ClockworkError):
    """``submit`` on a closed controller, or a request still waiting when it closed."""


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
        connector: Connector | None = None,
        link_secret: bytes | None = None,
        take_over: bool = False,
        supervised_workers: Collection[tuple[str, int]] = (),
        share_memory_with: Collection[tuple[str, int]] = (),
        on_response: Callable[[Response], None] | None = None,
        on_request: Callable[[InferRequest], None] | None = None,
        on_action_sent: Callable[[Action, int], None] | None = None,
        on_action_result: Callable[[ActionResult, int], None] | None = None,
        on_worker_joined: Callable[[str, tuple[DeviceInfo, ...]], None] | None = None,
        on_worker_lost: Callable[[str], None] | None = None,
    ) -> None:
        timing = LinkTiming(
            ping_interval_s=ping_interval_s,
            silence_pings=silence_pings,
            sync_pings=sync_pings,
            connect_backoff_s=connect_backoff_s,
            handshake_timeout_s=handshake_timeout_s,
        )
        self.controller_id = controller_id
        if connector is None:
            # TCP with the link handshake: the cluster secret (None: the insecure mode), and
            # whether to take workers over from another controller
            connector = TcpConnector(
                link_secret,
                controller_id,
                take_over=take_over,
                handshake_timeout_s=handshake_timeout_s,
                share_memory_with=share_memory_with,
            )
        self._connector = connector
        self._timing = timing
        self.default_slo_ns = default_slo_ns
        self.stats = ControllerStats()
        # telemetry (observers only: what a hook raises is logged and ignored)
        self.observers = Observers()
        for hook, fn in (
            ("on_request", on_request),
            ("on_response", on_response),
            ("on_action_sent", on_action_sent),
            ("on_action_result", on_action_result),
            ("on_worker_joined", on_worker_joined),
            ("on_worker_lost", on_worker_lost),
        ):
            if fn is not None:
                self.observers.add_hook(hook, fn)
        self._clock = clock_ns
        self._book = RequestBook()
        self._joined: dict[str, WorkerLink] = {}
        self._pump = SchedulingPump(
            policy, self._book, self._joined, self.observers, self.stats, clock_ns
        )
        self._links = [
            WorkerLink(
                host,
                port,
                controller_id=controller_id,
                owner=self,
                pump=self._pump,
                connector=connector,
                clock_ns=clock_ns,
                timing=timing,
                supervised=(host, port) in supervised_workers,
            )
            for host, port in workers
        ]
        self._models: dict[str, ModelInfo] = {}
        # unregistered by ``remove_model``: a worker that (re)joins does not bring them back
        self._removed: dict[str, ModelInfo] = {}
        self._heartbeat = LoopHeartbeat(self.observers)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        # set (and dropped) at the next join or loss: ``wait_workers`` waits on them
        self._membership: list[asyncio.Event] = []

    @property
    def scheduler(self) -> Scheduler:
        return self._pump.scheduler

    @property
    def timing(self) -> LinkTiming:
        return self._links[0].timing if self._links else LinkTiming()

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start one connection task per worker address; returns at once."""
        if self._loop is not None:
            raise RuntimeError("controller already started")
        self._loop = asyncio.get_running_loop()
        self._pump.start(self._loop)
        self._heartbeat.start(self._loop)
        for link in self._links:
            link.start()

    def add_worker(self, host: str, port: int) -> WorkerLink:
        """Connect to one more worker address, one started after us (a Ray node that joined):
        its link keeps connecting as those given at construction do. Returns the link."""
        link = WorkerLink(
            host,
            port,
            controller_id=self.controller_id,
            owner=self,
            pump=self._pump,
            connector=self._connector,
            clock_ns=self._clock,
            timing=self._timing,
        )
        self._links.append(link)
        if self._loop is not None and not self._closing:
            link.start()
        return link

    async def remove_worker(self, link: WorkerLink) -> None:
        """Stop connecting to ``link``'s address (its node is gone); a worker joined through it
        is lost, as on a disconnect."""
        self._links.remove(link)
        if link.task is not None:
            link.task.cancel()
            await asyncio.gather(link.task, return_exceptions=True)

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def workers(self) -> tuple[str, ...]:
        """The ids of the workers joined now."""
        return tuple(self._joined)

    def connect_errors(self) -> dict[str, str]:
        """Why each worker address that is not connected failed to connect, last time."""
        return {
            link.address: link.connect_error
            for link in self._links
            if link.connect_error is not None and link.conn is None
        }

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
        self._pump.run(ModelRemoved(name))

    def restore_model(self, name: str) -> None:
        """Serve again a model unregistered by ``remove_model`` (``KeyError`` if it was not)."""
        info = self._removed.pop(name)
        self._models[name] = info
        self._pump.run(ModelRegistered(info))

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
            fut: asyncio.Future[WorkerState] = self._loop.create_future()
            if not link.enqueue([RescanRepository(0)]):
                continue
            link.rescans.append(fut)
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
            self._pump.run(ModelRegistered(model))
            added.append(model.name)
        if added:
            log.info("worker %s: new models registered: %s", state.worker, ", ".join(added))
        if state.worker in self._joined:
            # removed models stay listed: a restore_model makes them servable there again
            self._pump.run(WorkerModelsChanged(state.worker, tuple(m.name for m in state.models)))
        return added

    async def wait_workers(self, n: int, timeout_s: float = 10.0) -> None:
        """Wait until at least ``n`` workers are joined (``TimeoutError`` after ``timeout_s``)."""
        async with asyncio.timeout(timeout_s):
            while len(self._joined) < n:
                changed = asyncio.Event()
                self._membership.append(changed)
                await changed.wait()

    async def close(self) -> None:
        """Disconnect from every worker; requests still waiting get ``ControllerClosedError``."""
        if self._closing:
            return
        self._closing = True
        tasks = [link.task for link in self._links if link.task is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pump.close()
        self._heartbeat.stop()
        self._book.close(ControllerClosedError("controller closed"))

    # ----------------------------------------------------------------- the public API

    async def submit(
        self,
        model: str,
        inputs: Mapping[str, npt.NDArray[np.generic]] | InferInputs | None = None,
        *,
        deadline_ns: int | None = None,
        timeout_ns: int | None = None,
        priority: int = 0,
        spent_ns: int = 0,
    ) -> Answer:
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

    def timeout_ns_of(self, info: ModelInfo | None) -> int:
        """The timeout of a request that gives none: its model's default SLO, else the
        server's."""
        slo = info.default_slo_ns if info is not None else None
        return slo if slo is not None else self.default_slo_ns

    def submit_nowait(
        self,
        model: str,
        inputs: Mapping[str, npt.NDArray[np.generic]] | InferInputs | None = None,
        *,
        deadline_ns: int | None = None,
        timeout_ns: int | None = None,
        priority: int = 0,
        spent_ns: int = 0,
    ) -> asyncio.Future[Answer]:
        """``submit`` without a coroutine: the future of its result (for a caller that submits
        many requests, e.g. a load generator, a task per request costs more than the controller
        spends scheduling it). Cancelling the future abandons the wait, not the request.
        ``inputs`` may come encoded already (``InferInputs``: the front door encodes them off
        this loop)."""
        if self._closing or self._loop is None:
            raise ControllerClosedError("controller is not running")
        now = self._clock()
        if deadline_ns is None:
            deadline_ns = self._deadline_ns(model, now, timeout_ns, spent_ns)
        return self._open(self._loop, model, inputs, now, deadline_ns, priority)[1]

    async def submit_call(
        self,
        model: str,
        samples: Sequence[Mapping[str, npt.NDArray[np.generic]] | InferInputs | None],
        *,
        timeout_ns: int | None = None,
        priority: int = 0,
        spent_ns: int = 0,
    ) -> list[Answer]:
        """Submit the samples of one client call, one request each, due together (deadline as
        ``submit``'s), and wait for their answers: all of them, in order, when every one
        delivers a result; else the first answer that delivers none, alone, as soon as it comes.
        Samples the backlog cannot all serve in time are refused together at arrival
        (``Scheduler.early_refusal`` with their count); a call that fails later has its
        requests still queued withdrawn (answered ``WITHDRAWN`` without taking device time from
        others), and so does a cancelled wait."""
        if self._closing or self._loop is None:
            raise ControllerClosedError("controller is not running")
        loop = self._loop
        now = self._clock()
        deadline_ns = self._deadline_ns(model, now, timeout_ns, spent_ns)
        if len(samples) > 1:
            # all or none: samples taken while others are refused would only take device time
            refused = self._refuse_call(model, now, deadline_ns, priority, len(samples))
            if refused is not None:
                return [(refused, None)]
        opened = self._open_call(loop, model, samples, now, deadline_ns, priority)
        futs = [f for _, f in opened]
        call: asyncio.Future[list[Answer]] = loop.create_future()
        left = len(futs)

        def answered(f: asyncio.Future[Answer]) -> None:
            nonlocal left
            if f.cancelled():  # (nothing here cancels one; were it to, the call ends too)
                if not call.done():
                    call.cancel()
                return
            # taken even once the call is over, or the loop reports it as never retrieved
            error = f.exception()
            if call.done():
                return
            if error is not None:
                call.set_exception(error)
                return
            answer = f.result()
            if not answer[0].status.delivered_result:
                call.set_result([answer])
                return
            left -= 1
            if not left:
                call.set_result([g.result() for g in futs])

        for f in futs:
            f.add_done_callback(answered)
        try:
            answers = await call
        except asyncio.CancelledError:
            self._withdraw(opened, "its caller stopped waiting")
            raise
        if len(answers) < len(futs):
            self._withdraw(
                opened, f"another sample of its call was refused ({answers[0][0].status.name})"
            )
        return answers

    def _open(
        self,
        loop: asyncio.AbstractEventLoop,
        model: str,
        inputs: Mapping[str, npt.NDArray[np.generic]] | InferInputs | None,
        now: int,
        deadline_ns: int,
        priority: int,
    ) -> tuple[int, asyncio.Future[Answer]]:
        return self._open_call(loop, model, (inputs,), now, deadline_ns, priority)[0]

    def _open_call(
        self,
        loop: asyncio.AbstractEventLoop,
        model: str,
        samples: Sequence[Mapping[str, npt.NDArray[np.generic]] | InferInputs | None],
        now: int,
        deadline_ns: int,
        priority: int,
    ) -> list[tuple[int, asyncio.Future[Answer]]]:
        opened = []
        requests = []
        for inputs in samples:
            rid, fut = self._book.open(loop, inputs)
            request = InferRequest(rid, model, now, deadline_ns, priority)
            self._count_request(request)
            requests.append(request)
            opened.append((rid, fut))
        # a call's samples in one event: the scheduler serves them together or withdraws the
        # others at once
        event = RequestArrived(requests[0]) if len(requests) == 1 else CallArrived(tuple(requests))
        self._pump.run_later(event)
        return opened

    def _withdraw(self, opened: Sequence[tuple[int, asyncio.Future[Answer]]], why: str) -> None:
        waiting = tuple(rid for rid, f in opened if not f.done())
        if waiting and not self._closing:
            self._pump.run_later(RequestsWithdrawn(waiting, why))

    def refuse_early(
        self,
        model: str,
        *,
        timeout_ns: int | None = None,
        priority: int = 0,
        spent_ns: int = 0,
        count: int = 1,
    ) -> Response | None:
        """The refusal a call of ``count`` requests of ``model`` (deadline as ``submit``'s)
        would get at arrival now, where the scheduler can tell without taking it
        (``Scheduler.early_refusal``): the requests are then counted and answered as submitted
        ones, and their inputs are never needed, so a front door need not decode them (the
        first's response is returned). None: submit them."""
        if self._closing or self._loop is None:
            return None
        now = self._clock()
        deadline_ns = self._deadline_ns(model, now, timeout_ns, spent_ns)
        return self._refuse_call(model, now, deadline_ns, priority, count)

    def _refuse_call(
        self, model: str, now: int, deadline_ns: int, priority: int, count: int
    ) -> Response | None:
        """Refuse the ``count`` requests of one call at once, where the scheduler can tell
        that it would (each counted and answered as a submitted request); the first's
        response, or None."""
        verdict = self._pump.scheduler.early_refusal(model, deadline_ns, now, count)
        if verdict is None:
            return None
        status, detail = verdict
        first: Response | None = None
        for _ in range(count):
            request = InferRequest(self._book.new_id(), model, now, deadline_ns, priority)
            self._count_request(request)
            self.stats.refused_early += 1
            response = Response(request.request_id, model, status, now, detail)
            self._pump.answer(response)
            first = first or response
        return first

    def _deadline_ns(self, model: str, now: int, timeout_ns: int | None, spent_ns: int) -> int:
        if timeout_ns is None:
            timeout_ns = self.timeout_ns_of(self._models.get(model))
        # a timeout used up before the controller saw it is infeasible, not invalid
        return now + max(1, timeout_ns - spent_ns)

    def _count_request(self, request: InferRequest) -> None:
        self.stats.submitted += 1
        hook = self.observers.on_request
        if hook is not None:
            try:
                hook(request)
            except Exception:
                log.exception("telemetry hook %r raised", hook)

    def pending(self) -> int:
        """Requests submitted and not answered yet."""
        return len(self._book)

    # ----------------------------------------------------------------- what the links report

    def joined(self, link: WorkerLink, state: WorkerState) -> bool:
        worker = state.worker
        other = self._joined.get(worker)
        if other is not None and other is not link:
            return False
        self._joined[worker] = link
        self.stats.joins += 1
        for model in state.models:
            if model.name in self._removed:
                continue
            if model.name not in self._models:
                self._models[model.name] = model
                self._pump.run(ModelRegistered(model))
        # with the models it serves: a model only some workers have is loaded on those only
        self._pump.run(WorkerJoined(worker, state.devices, tuple(m.name for m in state.models)))
        self.observers.notify("on_worker_joined", worker, state.devices)
        self._membership_changed()
        return True

    def _membership_changed(self) -> None:
        waiting, self._membership = self._membership, []
        for event in waiting:
            event.set()

    def lost(self, link: WorkerLink, worker: str, reason: str) -> None:
        if self._joined.get(worker) is not link:
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
        self._book.worker_lost(worker)
        self._pump.run(WorkerLost(worker))
        self.observers.notify("on_worker_lost", worker)
        self._membership_changed()

    def result(self, link: WorkerLink, msg: ActionResultMsg) -> None:
        self._book.result(msg)
        # the last result of what was read from the socket, with nothing else waiting to be
        # fed: run now (as a deferred run would, one loop iteration later); else wait for the
        # rest, which this same link reads without waiting, and feed them all to one poll
        conn = link.conn
        event = ActionFinished(msg.result)
        if conn is not None and not self._pump.busy and not conn.has_buffered_frame():
            self._pump.run(event)
        else:
            self._pump.run_later(event)

    def worker_state(self, link: WorkerLink, state: WorkerState) -> None:
        """A rescan's answer: to the oldest rescan waiting on ``link``, else register its new
        models here (its rescan gave up on it, or nobody asked: a worker's state is news)."""
        if state.worker != link.worker:
            log.warning("worker %s: ignoring a WorkerState of worker %r", link.worker, state.worker)
            return
        if link.rescans:
            fut = link.rescans.popleft()
            if not fut.done():
                fut.set_result(state)
                return
        self._register_new(state)
