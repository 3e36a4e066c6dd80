"""The worker service: a ``WorkerRuntime`` behind a TCP port, driven by one controller at a time.

Protocol (each side's messages are ``clockwork.transport`` messages):

- Every connection first passes the link handshake (``clockwork.transport.handshake``): both
  ends prove they hold the cluster secret (``secret``; None only in the insecure mode) before
  any frame is decoded. A peer that fails it is closed and has no effect here.
- **One controller at a time.** A controller that passed the handshake is *admitted* only if no
  other is live, where live means its connection is open and it was heard from within
  ``controller_silence_s`` (the controller pings every fraction of a second). Otherwise it is
  refused with the reason (it learns it in the handshake's verdict, logs it and retries with
  backoff), unless its hello asks to take over (``clockwork controller --take-over``). Every
  takeover, asked for or of a controller that is gone or silent, is logged as a warning with
  both controllers' ids and addresses and the reason. A half-open connection of a controller
  that died without closing its socket therefore locks the worker out for
  ``controller_silence_s`` at most. Results of actions the old controller sent are dropped,
  never delivered to the new one (each action gets a worker-internal id, so the controllers'
  ids never collide).
- The admitted connection must then send a ``Hello`` with role ``CONTROLLER`` and our
  ``PROTOCOL_VERSION``; we answer with our own ``Hello``. Anything else (or nothing for
  ``hello_timeout_s``) closes it, with the reason logged.
- ``Ping`` is answered with ``Pong`` (carrying our minimum one-way delta, for the controller's
  clock sync). Having sent nothing for ``heartbeat_s``, we send a ``Ping`` of our own: the
  controller judges us by what it hears, and its own pings may wait behind a large frame on
  the way here (a 9 MiB batch of inputs written a piece per turn of its loop took over 0.2 s on
  a loaded host, and a live worker was declared lost for want of a ping to answer);
  ``GetWorkerState`` with ``WorkerState``: the devices, each with the models resident
  on it, and every model registered on this worker. The answer waits (at most
  ``state_settle_s``) until no load is queued or running: a load a former controller sent would
  otherwise hold pages while its model looked absent, and the new controller would load it
  again, or plan another model into pages that are not free.
- ``RescanRepository`` runs the ``rescan`` callable given at construction in a thread (it may
  profile and read weights for seconds; actions keep being served meanwhile), makes the runtime
  learn the models it added to the backends, and answers ``WorkerState`` with the new models
  listed. Rescans run one at a time; one that fails is logged and answered with the state as it
  is. A worker without ``rescan`` answers at once with its state (nothing new).
- Actions (``LoadWeightsMsg``, ``InferMsg``, ``EvictWeightsMsg``) carry windows in the
  controller's clock. We convert them into ours with the connection's ``ClockSync`` and submit to
  the runtime; each result goes back as an ``ActionResultMsg`` with its times converted to the
  controller's clock, with the outputs of a successful ``Infer``.
- **Clock not yet synchronised** (the controller has not sent a ``Ping`` carrying its minimum
  delta yet): an action is refused at once with ``INVALID_WINDOW`` (times raw, on our clock). The
  controller is expected to ping until synced before sending actions, as ``ControllerService``
  does; we never guess the offset.
- A controller disconnect leaves the worker as it is: resident weights stay, actions already
  queued run (their results are dropped), and the next controller re-learns the state with
  ``GetWorkerState``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from clockwork.core.actions import Action, ActionResult, ActionStatus, EvictWeights
from clockwork.core.clock_sync import ClockSync
from clockwork.core.events import DeviceInfo, ModelInfo
from clockwork.core.ids import DeviceId
from clockwork.core.units import s_to_ns
from clockwork.transport import (
    PROTOCOL_VERSION,
    ActionResultMsg,
    ConnectionClosedError,
    EvictWeightsMsg,
    GetWorkerState,
    Hello,
    InferMsg,
    InferOutputs,
    LoadWeightsMsg,
    Message,
    Ping,
    Pong,
    ProtocolError,
    Role,
    Server,
    StreamConnection,
    WorkerState,
    pong_for,
    serve,
)
from clockwork.transport.handshake import LinkPeer
from clockwork.transport.memory import MemoryConnection
from clockwork.transport.messages import RescanRepository
from clockwork.worker.backends.base import Backend
from clockwork.worker.runtime import Outputs, WorkerRuntime

log = logging.getLogger("clockwork.service.worker")

#: how long a new connection may take to say Hello
HELLO_TIMEOUT_S = 10.0
#: a controller not heard from for longer than this no longer holds the worker (it pings
#: every 0.2 s by default)
CONTROLLER_SILENCE_S = 3.0
#: we ping the controller after sending nothing for this long: a tenth of its default silence
#: limit (8 of its 25 ms pings: 0.2 s)
HEARTBEAT_S = 0.02
# how long a GetWorkerState answer may wait for pending loads to settle, and how often it looks
STATE_SETTLE_S = 30.0
STATE_POLL_S = 0.002
NOT_SYNCED_DETAIL = "worker clock not synchronised with the controller yet"


class _Session:
    """The admitted controller's connection (it says Hello next, then is served)."""

    __slots__ = (
        "address",
        "conn",
        "controller",
        "heart",
        "last_tx_ns",
        "number",
        "queue",
        "sender",
    )

    def __init__(self, number: int, conn: StreamConnection, controller: str, address: str) -> None:
        self.number = number
        self.conn = conn
        #: the controller's id and address, as its handshake said
        self.controller = controller
        self.address = address
        self.queue: asyncio.Queue[Message] = asyncio.Queue()
        self.sender: asyncio.Task[None] | None = None
        self.heart: asyncio.Task[None] | None = None
        #: when the sender last handed a message to the connection (our clock)
        self.last_tx_ns = 0

    def describe(self) -> str:
        return f"controller {self.controller!r} ({self.address})"


class WorkerService:
    """Serve ``runtime_devices`` (one ``(DeviceId, Backend)`` each, all of worker ``worker_id``)
    and ``models`` to one controller at a time. See the module docstring.

    ``clock_ns`` is the worker's clock (the runtime's and the connections'); tests inject a skewed
    one. ``received`` counts the actions received, by ``(action type name, model)``.

    ``rescan`` (optional): called in a worker thread on ``RescanRepository``; it finds models
    that are not served yet, registers them into the backends (so that ``backend.models()``
    lists them) and returns their ``ModelInfo`` (it may return those of models served already
    too: they are ignored). It must skip (and log) a model that fails rather than raise; if it
    raises anyway, the rescan adds nothing.

    ``secret`` is the cluster secret every controller must prove (None: the insecure mode, any
    peer may connect); ``controller_silence_s`` how long the admitted controller may go unheard
    before another may replace it without asking to take over. ``takeovers`` counts the
    controllers replaced, ``refusals`` the controllers refused.
    """

    def __init__(
        self,
        worker_id: str,
        runtime_devices: Sequence[tuple[DeviceId, Backend]],
        models: Sequence[ModelInfo],
        *,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        hello_timeout_s: float = HELLO_TIMEOUT_S,
        state_settle_s: float = STATE_SETTLE_S,
        rescan: Callable[[], Sequence[ModelInfo]] | None = None,
        secret: bytes | None = None,
        controller_silence_s: float = CONTROLLER_SILENCE_S,
        shared_inputs: bool = False,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        if controller_silence_s <= 0:
            raise ValueError(f"controller_silence_s must be > 0, got {controller_silence_s}")
        if heartbeat_s <= 0:
            raise ValueError(f"heartbeat_s must be > 0, got {heartbeat_s}")
        for device, _ in runtime_devices:
            if device.worker != worker_id:
                raise ValueError(f"device {device} does not belong to worker {worker_id!r}")
        self.worker_id = worker_id
        self.models = tuple(models)
        self.hello_timeout_s = hello_timeout_s
        self.state_settle_s = state_settle_s
        self.rescan = rescan
        self.secret = secret
        self.controller_silence_s = controller_silence_s
        self.heartbeat_s = heartbeat_s
        # whether inputs may come as shared segments to map (a worker on its controller's host)
        self.shared_inputs = shared_inputs
        self.takeovers = 0
        self.refusals = 0
        # rescans run one at a time: two at once would register the same new models twice
        self._rescan_lock = asyncio.Lock()
        self._clock = clock_ns
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runtime = WorkerRuntime(runtime_devices, self._on_result, clock_ns)
        self._server: Server | None = None
        self._session: _Session | None = None
        self._sessions = 0
        self._next_action_id = 0
        # worker-internal action id -> (session, the controller's action id)
        self._routes: dict[int, tuple[_Session, int]] = {}
        self._closed = asyncio.Event()
        # set by close and by request_close: serve returns
        self._stop = asyncio.Event()
        # rescans in progress (kept referenced until done, as asyncio requires)
        self._tasks: set[asyncio.Task[None]] = set()
        self.received: Counter[tuple[str, str]] = Counter()

    # ----------------------------------------------------------------- lifecycle

    @property
    def runtime(self) -> WorkerRuntime:
        return self._runtime

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("worker service is not listening")
        return self._server.port

    @property
    def clock_ns(self) -> Callable[[], int]:
        """The worker's clock."""
        return self._clock

    @property
    def controller_connected(self) -> bool:
        return self._session is not None

    async def start(self, host: str, port: int) -> Server:
        """Listen on ``host:port`` (0: any free port, see ``port``) and return at once."""
        if self._server is not None:
            raise RuntimeError("worker service already started")
        self._loop = asyncio.get_running_loop()
        self._server = await serve(
            host,
            port,
            self._handle,
            clock_ns=self._clock,
            clock_sync_factory=ClockSync,
            secret=self.secret,
            server_id=self.worker_id,
            admit=self._admit,
        )
        log.info(
            "worker %s listening on %s:%d (%s)",
            self.worker_id,
            *self._server.address,
            "cluster secret required" if self.secret is not None else "INSECURE: no cluster secret",
        )
        return self._server

    def accept(
        self, conn: MemoryConnection, controller_id: str = "in-process", take_over: bool = False
    ) -> asyncio.Task[None] | None:
        """Serve ``conn``, an in-memory connection from a controller in this process (tests
        drive a controller and workers in one loop this way, without sockets): admitted as a
        handshake would admit ``controller_id`` (None, ``conn`` closed with the reason, if it
        is refused)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        conn.peer = LinkPeer(controller_id, conn.name, authenticated=True, take_over=take_over)
        refused = self._admit(conn)  # type: ignore[arg-type]
        if refused is not None:
            conn.close(refused)
            return None
        task = asyncio.create_task(self._handle(conn), name=f"session {conn.name}")  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def serve(self, host: str, port: int) -> None:
        """Listen on ``host:port`` and serve until ``close``."""
        await self.start(host, port)
        await self._stop.wait()

    def request_close(self) -> None:
        """Make ``serve`` return (for signal handlers); the caller then awaits ``close``."""
        self._stop.set()

    async def close(self) -> None:
        """Stop listening, drop the controller and stop the runtime (idempotent)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._stop.set()
        if self._server is not None:
            self._server.close("worker shutting down")
            await self._server.wait_closed()
        self._session = None
        for task in list(self._tasks):  # a rescan's thread runs on; its answer is not wanted
            task.cancel()
        await asyncio.to_thread(self._runtime.close)

    # ----------------------------------------------------------------- connections

    def _not_live(self, session: _Session) -> str | None:
        """Why ``session`` no longer holds the worker; None while it does."""
        if session.conn.closed:
            return f"its connection is closed ({session.conn.close_reason})"
        silent_s = (self._clock() - session.conn.last_rx_ns) / 1e9
        if silent_s > self.controller_silence_s:
            return f"it was silent for {silent_s:.1f} s (limit {self.controller_silence_s:.1f} s)"
        return None

    def _admit(self, conn: StreamConnection) -> str | None:
        """Called by the server for each connection that passed the handshake: admit it as the
        controller (None), or the reason it is refused. See the module docstring."""
        peer = conn.peer
        assert peer is not None
        if self._closed.is_set():
            return f"worker {self.worker_id} is shutting down"
        new = f"controller {peer.peer_id!r} ({peer.address})"
        old = self._session
        if old is not None:
            why_not = self._not_live(old)
            if why_not is None and not peer.take_over:
                silent_s = (self._clock() - old.conn.last_rx_ns) / 1e9
                reason = (
                    f"worker {self.worker_id} serves {old.describe()}, heard from "
                    f"{silent_s:.1f} s ago; another controller takes over only with --take-over"
                )
                self.refusals += 1
                log.warning("refused %s: %s", new, reason)
                return reason
            why = "it asked to take over (--take-over)" if why_not is None else why_not
            self.takeovers += 1
            log.warning(
                "TAKEOVER: %s takes worker %s over from %s: %s",
                new,
                self.worker_id,
                old.describe(),
                why,
            )
            self._close_session(old, f"taken over by {new}: {why}")
        self._sessions += 1
        self._session = _Session(self._sessions, conn, peer.peer_id, peer.address)
        return None

    async def _handle(self, conn: StreamConnection) -> None:
        session = self._session
        if session is None or session.conn is not conn:
            conn.close("taken over before it said Hello")
            return
        try:
            first = await asyncio.wait_for(conn.recv(), self.hello_timeout_s)
        except TimeoutError:
            log.warning(
                "connection %s: no Hello within %.1f s; closing", conn.name, self.hello_timeout_s
            )
            self._close_session(session, "no Hello")
            return
        except ConnectionClosedError:
            self._close_session(session, conn.close_reason or "closed before its Hello")
            return
        if not isinstance(first, Hello):
            reason = f"expected Hello, got {type(first).__name__}"
        elif first.role is not Role.CONTROLLER:
            reason = f"peer is a {first.role.value}, not a controller"
        elif first.protocol_version != PROTOCOL_VERSION:
            reason = (
                f"protocol version {first.protocol_version}, this worker speaks {PROTOCOL_VERSION}"
            )
        else:
            reason = ""
        if reason:
            log.warning("connection %s refused: %s", conn.name, reason)
            self._close_session(session, reason)
            return
        assert isinstance(first, Hello)
        if session is not self._session:  # taken over while its Hello was on the way
            conn.close("taken over")
            return
        self._start_session(session)
        try:
            async for msg in conn:
                if session is not self._session:
                    break
                self._on_message(session, msg)
        finally:
            self._close_session(session, conn.close_reason or "handler ended")

    def _start_session(self, session: _Session) -> None:
        session.sender = asyncio.create_task(
            self._send_loop(session), name=f"worker {self.worker_id} sender"
        )
        session.heart = asyncio.create_task(
            self._heartbeat(session), name=f"worker {self.worker_id} heartbeat"
        )
        session.queue.put_nowait(Hello(0, PROTOCOL_VERSION, Role.WORKER, self.worker_id))
        log.info("%s connected (connection %s)", session.describe(), session.conn.name)

    def _close_session(self, session: _Session, reason: str) -> None:
        if self._session is session:
            self._session = None
            log.info("controller connection %s ended: %s", session.conn.name, reason)
        session.conn.close(reason)
        for task in (session.sender, session.heart):
            if task is not None:
                task.cancel()

    async def _send_loop(self, session: _Session) -> None:
        conn = session.conn
        while True:
            msg = await session.queue.get()
            try:
                await conn.send(msg)
                session.last_tx_ns = self._clock()
            except ConnectionClosedError:
                return
            except ProtocolError as e:
                log.warning("could not send %s: %s", type(msg).__name__, e)
                if isinstance(msg, ActionResultMsg):
                    # the controller must still hear about the action
                    r = msg.result
                    fallback = replace(
                        r,
                        status=ActionStatus.EXECUTION_ERROR,
                        detail=f"result could not be sent: {e}",
                    )
                    with contextlib.suppress(ProtocolError, ConnectionClosedError):
                        await conn.send(ActionResultMsg(0, fallback))

    async def _heartbeat(self, session: _Session) -> None:
        """A ``Ping`` whenever nothing was sent for ``heartbeat_s`` (module docstring)."""
        interval_ns = s_to_ns(self.heartbeat_s)
        seq = 0
        while True:
            await asyncio.sleep(self.heartbeat_s)
            if self._clock() - session.last_tx_ns < interval_ns or not session.queue.empty():
                continue  # the controller hears from us anyway
            sync = session.conn.clock_sync
            session.queue.put_nowait(
                Ping(0, seq, None if sync is None else sync.local_min_delta_ns)
            )
            seq += 1

    # ----------------------------------------------------------------- messages

    def state_message(self) -> WorkerState:
        devices = []
        for device in self._runtime.devices:
            snap = self._runtime.state(device)
            devices.append(
                DeviceInfo(device, self._runtime.backend(device).kind, snap.resident_models)
            )
        return WorkerState(0, self.worker_id, tuple(devices), self.models)

    def _on_message(self, session: _Session, msg: Message) -> None:
        if isinstance(msg, Ping):
            session.queue.put_nowait(pong_for(msg, session.conn.clock_sync))
        elif isinstance(msg, Pong):
            pass  # the answer to a heartbeat: hearing it was all (the connection kept its delta)
        elif isinstance(msg, GetWorkerState):
            if self._loads_pending():
                self._spawn(self._answer_state(session), "state")
            else:
                session.queue.put_nowait(self.state_message())
        elif isinstance(msg, RescanRepository):
            # a task, not a wait: pings and actions must be served while it runs
            self._spawn(self._answer_rescan(session), "rescan")
        elif isinstance(msg, LoadWeightsMsg | InferMsg | EvictWeightsMsg):
            self._submit(session, msg)
        else:
            log.warning(
                "controller connection %s: ignoring unexpected %s",
                session.conn.name,
                type(msg).__name__,
            )

    async def rescan_models(self) -> list[ModelInfo]:
        """Run ``rescan`` (in a thread) and serve the models it returns; return those that are
        new (none without ``rescan``, or if it raised). Serialised with other rescans."""
        if self.rescan is None:
            return []
        async with self._rescan_lock:
            try:
                found = list(await asyncio.to_thread(self.rescan))
            except Exception:
                log.exception("worker %s: repository rescan failed", self.worker_id)
                return []
            # the runtime must accept a model before the controller may hear of it
            self._runtime.refresh_models()
            servable = {
                name
                for device in self._runtime.devices
                for name in self._runtime.backend(device).models()
            }
            known = {m.name for m in self.models}
            new: list[ModelInfo] = []
            for info in found:
                if info.name in known:
                    continue
                if info.name not in servable:
                    log.warning(
                        "worker %s: rescan returned model %s, which no backend has; skipped",
                        self.worker_id,
                        info.name,
                    )
                    continue
                known.add(info.name)
                new.append(info)
            if new:
                self.models = (*self.models, *new)
                log.info(
                    "worker %s: now serving %d new model(s): %s",
                    self.worker_id,
                    len(new),
                    ", ".join(m.name for m in new),
                )
            return new

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        task = asyncio.create_task(coro, name=f"worker {self.worker_id} {what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _loads_pending(self) -> bool:
        for device in self._runtime.devices:
            snap = self._runtime.state(device)
            if snap.queued_load or snap.running_load is not None:
                return True
        return False

    async def _answer_state(self, session: _Session) -> None:
        give_up = time.monotonic() + self.state_settle_s
        while self._loads_pending() and time.monotonic() < give_up:
            await asyncio.sleep(STATE_POLL_S)
        if self._loads_pending():
            log.warning(
                "worker %s: loads still pending after %.1f s; reporting the state as it "
                "is (models still loading are not listed)",
                self.worker_id,
                self.state_settle_s,
            )
        if session is self._session:
            session.queue.put_nowait(self.state_message())

    async def _answer_rescan(self, session: _Session) -> None:
        await self.rescan_models()
        if session is self._session:
            session.queue.put_nowait(self.state_message())
        else:
            log.info(
                "worker %s: rescan done after its controller left; reply dropped", self.worker_id
            )

    def _submit(self, session: _Session, msg: LoadWeightsMsg | InferMsg | EvictWeightsMsg) -> None:
        action = msg.action
        self.received[(type(action).__name__, action.model)] += 1
        sync = session.conn.clock_sync
        if sync is None or not sync.ready:
            _refuse(session, action, ActionStatus.INVALID_WINDOW, self._clock(), NOT_SYNCED_DETAIL)
            return
        inputs: list[dict[str, npt.NDArray[np.generic]]] | None = None
        if isinstance(msg, InferMsg) and msg.inputs:
            try:
                inputs = self._input_arrays(msg)
            except (OSError, ValueError) as e:
                # refused as a bad input: the request it served was answered meanwhile (its
                # segment is removed then), or the controller is not on this host
                now = sync.to_remote(self._clock())  # the controller's clock
                _refuse(
                    session, action, ActionStatus.INVALID_INPUT, now, f"inputs cannot be read: {e}"
                )
                return
        internal = self._next_action_id
        self._next_action_id += 1
        self._routes[internal] = (session, action.action_id)
        if isinstance(action, EvictWeights):
            self._runtime.submit(replace(action, action_id=internal))
            return
        local = replace(
            action,
            action_id=internal,
            earliest_ns=sync.to_local(action.earliest_ns),
            latest_ns=sync.to_local(action.latest_ns),
        )
        self._runtime.submit(local, inputs)

    def _input_arrays(self, msg: InferMsg) -> list[dict[str, npt.NDArray[np.generic]]]:
        if msg.shares_memory and not self.shared_inputs:
            raise ValueError(
                "they came as shared-memory segments, which this worker does not map "
                "(it was not started with --shared-inputs)"
            )
        return msg.input_arrays()

    # ----------------------------------------------------------------- results

    def _on_result(self, result: ActionResult, outputs: Outputs | None) -> None:
        """From the runtime's threads (or from ``submit``): hand over to the event loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._deliver, result, outputs)

    def _deliver(self, result: ActionResult, outputs: Outputs | None) -> None:
        route = self._routes.pop(result.action_id, None)
        if route is None:
            return
        session, action_id = route
        if session is not self._session:
            log.debug("dropping result of action %d of a former controller", action_id)
            return
        sync = session.conn.clock_sync
        if sync is not None and sync.ready:
            on_theirs = sync.to_remote  # times on the controller's clock
            converted = replace(
                result,
                action_id=action_id,
                received_ns=on_theirs(result.received_ns),
                began_ns=on_theirs(result.began_ns),
                ended_ns=on_theirs(result.ended_ns),
            )
        else:
            converted = replace(result, action_id=action_id)
        outs = tuple(InferOutputs.from_arrays(o) for o in outputs) if outputs else ()
        session.queue.put_nowait(ActionResultMsg(0, converted, outs))


def _refuse(
    session: _Session, action: Action, status: ActionStatus, now_ns: int, detail: str
) -> None:
    """Answer ``action`` at once with ``status``, without running it."""
    result = ActionResult(
        action.action_id, action.device, action.model, status, now_ns, now_ns, now_ns, detail=detail
    )
    session.queue.put_nowait(ActionResultMsg(0, result))
