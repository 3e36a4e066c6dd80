"""The controller's links to its workers: one per configured address, each keeping a connection.

A link's task:

1. connects (through the injected ``Connector``: TCP in service, in-memory in tests), retrying
   with exponential backoff (``connect_backoff_s``);
2. handshake: our ``Hello`` (role ``CONTROLLER``), the worker's ``Hello`` (its id);
3. clock sync: ``sync_pings`` ping/pong rounds, every ping carrying our minimum one-way delta, so
   that *both* sides' ``ClockSync`` is ready before any action is sent (the worker refuses
   actions until then);
4. ``GetWorkerState``, then hands the ``WorkerState`` to the owner (``joined``): the owner
   registers its models and tells the scheduler;
5. serves: a receive loop hands each result, ping and state to the owner, a sender drains the
   link's queue, and a pinger sends a ``Ping`` every ``ping_interval_s``. A worker silent for
   ``silence_pings`` ping intervals is closed.

When the connection ends (disconnect, silence, protocol error), the owner hears ``lost`` and the
task goes back to step 1: a worker that comes back re-joins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from clockwork.core.actions import EvictWeights
from clockwork.core.clock_sync import ClockSync
from clockwork.core.events import ActionFinished
from clockwork.core.units import NS_PER_S, s_to_ns
from clockwork.service.scheduling_pump import SchedulingPump, too_late
from clockwork.transport import (
    PROTOCOL_VERSION,
    ActionResultMsg,
    ConnectionClosedError,
    GetWorkerState,
    Hello,
    Message,
    Ping,
    Pong,
    ProtocolError,
    Role,
    WorkerState,
    connect,
    pong_for,
)
from clockwork.transport.connection import Connection

log = logging.getLogger("clockwork.service.controller")

#: a worker address refusing connections for this long is logged as a warning
CONNECT_WARN_AFTER_NS = 5 * NS_PER_S


class LinkConnection(Connection, Protocol):
    """What a link needs of a connection (``StreamConnection`` and ``MemoryConnection``)."""

    def send_nowait(
        self, msgs: Sequence[Message]
    ) -> Sequence[tuple[Message, ProtocolError]] | None: ...

    def has_buffered_frame(self) -> bool: ...


#: opens a connection to ``(host, port)`` whose messages are stamped with ``clock_ns`` and
#: observed by ``clock_sync``
Connector = Callable[[str, int, Callable[[], int], ClockSync], Awaitable[LinkConnection]]


class TcpConnector:
    """A ``Connector`` over TCP, with the link handshake: the cluster ``secret`` (None: the
    insecure mode), our id, and ``take_over`` asked on the first connection to each worker
    only (a controller taken over from in turn must not take the worker back: two such
    controllers would flap)."""

    def __init__(
        self,
        secret: bytes | None = None,
        sender_id: str = "",
        *,
        take_over: bool = False,
        handshake_timeout_s: float = 5.0,
        share_memory_with: Collection[tuple[str, int]] = (),
    ) -> None:
        self._secret = secret
        # workers on this host that map inputs' shared segments (serve's local worker)
        self._share_memory_with = frozenset(share_memory_with)
        self._sender_id = sender_id
        self._take_over = take_over
        self._handshake_timeout_s = handshake_timeout_s
        self._connected: set[tuple[str, int]] = set()

    async def __call__(
        self, host: str, port: int, clock_ns: Callable[[], int], clock_sync: ClockSync
    ) -> LinkConnection:
        conn = await connect(
            host,
            port,
            clock_ns=clock_ns,
            clock_sync=clock_sync,
            secret=self._secret,
            sender_id=self._sender_id,
            take_over=self._take_over and (host, port) not in self._connected,
            handshake_timeout_s=self._handshake_timeout_s,
        )
        self._connected.add((host, port))
        conn.share_memory = (host, port) in self._share_memory_with
        return conn


@dataclass(frozen=True)
class LinkTiming:
    """How a link paces itself."""

    # a stalled worker is lost within 250 ms: silent for 8 pings of 25 ms
    ping_interval_s: float = 0.025
    silence_pings: int = 8
    sync_pings: int = 5
    connect_backoff_s: tuple[float, float] = (0.05, 2.0)
    handshake_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.ping_interval_s <= 0 or self.silence_pings < 1 or self.sync_pings < 1:
            raise ValueError("ping_interval_s > 0, silence_pings >= 1 and sync_pings >= 1 required")


class LinkOwner(Protocol):
    """What a link tells the controller."""

    @property
    def closing(self) -> bool: ...

    def joined(self, link: WorkerLink, state: WorkerState) -> bool:
        """``link`` finished its set-up as worker ``state.worker``; False refuses it (the id is
        joined from elsewhere)."""
        ...

    def lost(self, link: WorkerLink, worker: str, reason: str) -> None: ...

    def result(self, link: WorkerLink, msg: ActionResultMsg) -> None: ...

    def worker_state(self, link: WorkerLink, state: WorkerState) -> None: ...


class HandshakeError(Exception):
    pass


class WorkerLink:
    """One configured worker address and its current connection; see the module docstring.
    While joined it is the scheduling pump's outlet for that worker."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        controller_id: str,
        owner: LinkOwner,
        pump: SchedulingPump,
        connector: Connector,
        clock_ns: Callable[[], int],
        timing: LinkTiming,
        supervised: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.controller_id = controller_id
        self._owner = owner
        self._pump = pump
        self._connector = connector
        self._clock = clock_ns
        self.timing = timing
        self.conn: LinkConnection | None = None
        self.worker: str | None = None  # set while joined
        self.queue: asyncio.Queue[Message] | None = None
        self.last_rx_ns = 0
        self.task: asyncio.Task[None] | None = None
        # one per RescanRepository sent on this connection and not answered yet, oldest first
        # (a worker answers them in order); one given up on stays, cancelled, until its answer
        self.rescans: deque[asyncio.Future[WorkerState]] = deque()
        # why the last connect failed (None once one succeeds), since when it has been failing,
        # and whether that was logged as a warning
        self.connect_error: str | None = None
        self._failing_since_ns: int | None = None
        self._warned = False
        # a worker whose process this controller's own supervisor starts and restarts (serve's
        # local worker): refused connections while it starts are expected, and the supervisor
        # reports its failures, so they are never warned about here
        self.supervised = supervised

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def name(self) -> str:
        return self.conn.name if self.conn is not None else self.address

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"link {self.address}")

    # ----------------------------------------------------------------- the pump's outlet

    def send_now(self, msgs: Sequence[Message]) -> Sequence[tuple[Message, ProtocolError]] | None:
        queue, conn = self.queue, self.conn
        if queue is None or conn is None:
            raise ConnectionClosedError("link has no session")
        if not queue.empty():
            return None  # behind what is queued: keeps the link's order
        return conn.send_nowait(msgs)

    def enqueue(self, msgs: Sequence[Message]) -> bool:
        queue = self.queue
        if queue is None:
            return False
        for msg in msgs:
            queue.put_nowait(msg)
        return True

    # ----------------------------------------------------------------- the connection

    async def _run(self) -> None:
        low, high = self.timing.connect_backoff_s
        backoff = low
        while not self._owner.closing:
            try:
                conn = await self._connector(self.host, self.port, self._clock, ClockSync())
            except OSError as e:
                # an address that keeps refusing is a misconfiguration the operator must see:
                # said once per outage, past the seconds a worker takes to start
                self.connect_error = str(e)
                now = self._clock()
                if self._failing_since_ns is None:
                    self._failing_since_ns = now
                warned = self._warned
                if (
                    not warned
                    and not self.supervised
                    and now - self._failing_since_ns >= CONNECT_WARN_AFTER_NS
                ):
                    self._warned = True
                    log.warning("worker %s: cannot connect (%s); retrying", self.address, e)
                else:
                    log.debug("worker %s: cannot connect (%s); retrying", self.address, e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, high)
                continue
            self.conn = conn
            self.connect_error = None
            self._failing_since_ns = None
            self._warned = False
            try:
                await self._session(conn)
                backoff = low
            except TimeoutError:
                log.warning(
                    "worker %s: no answer within %.1f s during set-up",
                    self.address,
                    self.timing.handshake_timeout_s,
                )
            except (ConnectionClosedError, ProtocolError, HandshakeError) as e:
                log.warning("worker %s: %s: %s", self.address, type(e).__name__, e)
            finally:
                conn.close("controller closing" if self._owner.closing else "session ended")
                self._end(conn.close_reason or "connection ended")
                self.conn = None
                with contextlib.suppress(Exception):
                    await conn.wait_closed()
            if not self._owner.closing:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, high)

    async def _recv(self, conn: LinkConnection, kind: type[Message]) -> Message:
        """The next message of type ``kind`` during set-up (others are ignored)."""
        async with asyncio.timeout(self.timing.handshake_timeout_s):
            while True:
                msg = await conn.recv()
                if isinstance(msg, kind):
                    return msg
                log.debug("%s: ignoring %s during set-up", conn.name, type(msg).__name__)

    async def _session(self, conn: LinkConnection) -> None:
        timing = self.timing
        await conn.send(Hello(0, PROTOCOL_VERSION, Role.CONTROLLER, self.controller_id))
        async with asyncio.timeout(timing.handshake_timeout_s):
            hello = await conn.recv()
        if not isinstance(hello, Hello):
            raise HandshakeError(f"expected Hello, got {type(hello).__name__}")
        if hello.role is not Role.WORKER or hello.protocol_version != PROTOCOL_VERSION:
            raise HandshakeError(
                f"peer is a {hello.role.value} speaking protocol "
                f"{hello.protocol_version}, expected a worker speaking "
                f"{PROTOCOL_VERSION}"
            )
        worker = hello.sender_id
        sync = conn.clock_sync
        assert sync is not None
        seq = 0
        for _ in range(timing.sync_pings):
            await conn.send(Ping(0, seq, sync.local_min_delta_ns))
            seq += 1
            await self._recv(conn, Pong)
        if not sync.ready:
            raise HandshakeError("clock not synchronised after the sync pings")
        await conn.send(GetWorkerState(0))
        state = await self._recv(conn, WorkerState)
        assert isinstance(state, WorkerState)
        if state.worker != worker:
            raise HandshakeError(f"worker {worker!r} sent the state of {state.worker!r}")
        for info in state.devices:
            if info.device.worker != worker:
                raise HandshakeError(f"worker {worker!r} reports device {info.device}")
        log.info(
            "worker %s (%s) synced: offset %+d ns, rtt %d ns, %d devices, %d models",
            worker,
            self.address,
            sync.offset_ns,
            sync.rtt_ns,
            len(state.devices),
            len(state.models),
        )
        if self._owner.closing:
            return
        queue: asyncio.Queue[Message] = asyncio.Queue()
        self.queue = queue
        self.last_rx_ns = self._clock()
        if not self._owner.joined(self, state):
            self.queue = None
            raise HandshakeError(f"worker id {worker!r} is already joined from another address")
        self.worker = worker
        sender = asyncio.create_task(self._send_loop(conn, queue), name=f"send {worker}")
        pinger = asyncio.create_task(self._ping_loop(conn, queue, seq), name=f"ping {worker}")
        owner = self._owner
        try:
            async for msg in conn:
                self.last_rx_ns = self._clock()
                if isinstance(msg, ActionResultMsg):
                    owner.result(self, msg)
                elif isinstance(msg, Ping):
                    queue.put_nowait(pong_for(msg, sync))
                elif isinstance(msg, WorkerState):
                    owner.worker_state(self, msg)
                elif not isinstance(msg, Pong):
                    log.warning("worker %s: ignoring unexpected %s", worker, type(msg).__name__)
        finally:
            sender.cancel()
            pinger.cancel()
            await asyncio.gather(sender, pinger, return_exceptions=True)

    def _end(self, reason: str) -> None:
        worker = self.worker
        self.worker = None
        self.queue = None
        # rescans waiting on this connection will get no answer on it
        while self.rescans:
            self.rescans.popleft().cancel()
        if worker is not None:
            self._owner.lost(self, worker, reason)

    async def _send_loop(self, conn: LinkConnection, queue: asyncio.Queue[Message]) -> None:
        pump = self._pump
        while True:
            # everything queued by the time this task runs goes out in one write
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            now = self._clock()
            ready: list[Message] = []
            too_late_seen = False
            for msg in batch:
                action = getattr(msg, "action", None)
                if (
                    action is not None
                    and type(action) is not EvictWeights
                    and action.latest_ns < now
                ):
                    pump.count_too_late()
                    pump.defer(ActionFinished(too_late(action, now)))
                    too_late_seen = True
                else:
                    ready.append(msg)
            if ready:
                try:
                    failed = await conn.send_many(ready)
                except ConnectionClosedError:
                    if too_late_seen:
                        pump.run()
                    return
                pump.sent(conn.name, ready, failed)
            # only now: the actions this schedules must not overtake those in ``ready``
            if too_late_seen:
                pump.run()

    async def _ping_loop(
        self, conn: LinkConnection, queue: asyncio.Queue[Message], seq: int
    ) -> None:
        interval_s = self.timing.ping_interval_s
        silence_ns = self.timing.silence_pings * s_to_ns(interval_s)
        sync = conn.clock_sync
        while True:
            await asyncio.sleep(interval_s)
            silent_ns = self._clock() - self.last_rx_ns
            if silent_ns > silence_ns:
                # this loop may be what stalled (its wake-up late): what the worker sent
                # meanwhile is read first, and counts
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                silent_ns = self._clock() - self.last_rx_ns
            if silent_ns > silence_ns:
                conn.abort(f"worker silent for {silent_ns / NS_PER_S:.2f} s")
                return
            queue.put_nowait(Ping(0, seq, None if sync is None else sync.local_min_delta_ns))
            seq += 1
