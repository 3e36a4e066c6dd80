"""The HTTP side of the door (``limits``): connection cap and timeouts, and early refusal.

aiohttp has no header or body timeout of its own and no connection cap; its keep-alive timer
is the one guard against a dead connection. So each connection's protocol (aiohttp's
``RequestHandler``) is wrapped in ``_Connection``, an ``asyncio.Protocol`` that forwards every
call to it and keeps one timer for the phase the connection is in:

- IDLE (opened, or the last answer sent): closed after ``idle_timeout_s`` without a byte;
- HEADERS (bytes arrived, no complete request yet): closed after ``header_timeout_s``;
- BODY (request admitted, body not all read): a grace of ``body_timeout_s``, then the body must
  keep arriving at ``min_body_rate_bytes_per_s`` on average;
- HANDLING (body read, answer pending): no timer, the request's deadline is the scheduler's.

Apart from the phase, while the socket takes nothing more of what is written (the transport
paused its writer), a write timer: an answer none of which is sent for ``write_timeout_s`` is
dropped and the connection aborted, so that a client that never reads does not hold the
answer's memory for ever.

The middleware (``door_middleware``) runs once the headers are parsed, before the handler reads
the body. It refuses, with the usual JSON error body and ``Connection: close``, a request over its
kind's in-flight cap, one whose Content-Length would cross the bound on bodies in flight, and an
inference request for a model that is unknown or not ready; the body is then never buffered, only
drained (for at most ``linger_s``) so that the client reads the refusal. A chunked body is
counted as it arrives and cut with a 503 when it crosses the bound; a compressed body counts as
the largest body it may decode to (``client_max_size``). ``DoorRunner`` is an
``AppRunner`` that installs the wrapper and aiohttp's own keep-alive timer as a backstop.

Under overload most inference requests are refused for the in-flight limit, and the middleware's
refusal costs what any request costs aiohttp (its parser, request object, middlewares, response
object; about 0.2 ms of the loop each). So where nothing needs checking first (inference needs no
token) the wrapper refuses such a request itself, as the middleware would (same status, body and
count), when the whole of it (head and ``Content-Length`` body) came in one read while the
connection was idle and the door is at its limit: aiohttp never sees it. Anything else (a head or
body split across reads, chunked, ``Expect``, a ``Connection`` header, HTTP/1.0) goes the usual
way.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web

from clockwork.frontend.api import ErrorKind, FrontendError, ModelServer
from clockwork.frontend.door_ticket import TICKET, DoorTicket
from clockwork.frontend.limits import Door, Refusal, RequestKind, Timeout

__all__ = ["FIRST_BYTE_NS", "DoorRunner", "door_middleware", "refused_mid_body"]

_log = logging.getLogger(__name__)

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: the request's key for when its first byte arrived (perf_counter_ns): its handler counts the
#: time since then as spent of the client's timeout
FIRST_BYTE_NS = web.RequestKey("clockwork.first_byte_ns", int)
# the statuses of a refusal (come back later), timed in ``Door.refusal_times``
_REFUSED = frozenset((429, 503))
# the bound on a chunked body is checked this often at most when the body stalls
_MIN_CHECK_S = 0.05
# answered to a connection over the cap before anything is read from it
_CONNECTIONS_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s"
)


# the fast refusal (see the module docstring) looks for a head this long at most
_FAST_HEAD_MAX = 8 * 1024
_FAST_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json; charset=utf-8\r\n"
    b"Retry-After: 1\r\n"
    b"Content-Length: %d\r\n\r\n%s"
)
# headers after which the request is left to aiohttp
_FAST_NO = frozenset((b"transfer-encoding", b"expect", b"upgrade", b"connection"))


class _Phase(enum.Enum):
    IDLE = enum.auto()
    HEADERS = enum.auto()
    BODY = enum.auto()
    HANDLING = enum.auto()
    CLOSED = enum.auto()


def _error_body(message: str, reason: str) -> bytes:
    return json.dumps({"error": message, "reason": reason}, separators=(",", ":")).encode()


class _Connection(asyncio.Protocol):
    """One client connection: aiohttp's protocol for it plus the door's phase and timer."""

    __slots__ = (
        "_body_mark",
        "_body_start",
        "_chunked",
        "_door",
        "_draining",
        "_factory",
        "_fast",
        "_first_byte_ns",
        "_held",
        "_inner",
        "_loop",
        "_phase",
        "_received",
        "_request",
        "_timer",
        "_transport",
        "_write_left",
        "_write_timer",
        "cut",
    )

    def __init__(
        self, factory: Callable[[], asyncio.Protocol], door: Door, fast_refusals: bool
    ) -> None:
        self._factory = factory
        self._door = door
        self._fast = fast_refusals
        self._loop = asyncio.get_running_loop()
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._phase = _Phase.IDLE
        self._timer: asyncio.TimerHandle | None = None
        self._received = 0  # bytes received on this connection
        # perf_counter_ns of the current request's first byte; 0: taken by the middleware
        self._first_byte_ns = 0
        self._request: web.BaseRequest | None = None
        self._body_start = 0.0
        self._body_mark = 0  # ``_received`` when the current request was admitted
        self._chunked = False
        self._held = 0  # body bytes of the current request reserved in the door
        self.cut = False  # the current chunked body crossed the bound
        self._draining: web.BaseRequest | None = None  # refused; its body is being dropped
        # runs while the socket takes nothing more of what we write (``write_timeout_s``)
        self._write_timer: asyncio.TimerHandle | None = None
        self._write_left = 0  # bytes waiting to be sent when the timer was armed

    # ----------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = t = cast(asyncio.Transport, transport)
        door = self._door
        if door.open_connections["http"] >= door.limits.max_connections:
            door.refused(Refusal.CONNECTIONS)
            self._phase = _Phase.CLOSED
            body = _error_body(
                f"the server has {door.limits.max_connections} connections open, its limit",
                Refusal.CONNECTIONS.value,
            )
            # no aiohttp handler is made for it; the request is read and dropped until the
            # client closes, at most ``linger_s`` (closing with unread data resets the connection)
            t.write(_CONNECTIONS_REFUSAL % (len(body), body))
            self._timer = self._loop.call_later(door.limits.linger_s, t.close)
            return
        door.open_connections["http"] += 1
        self._inner = inner = self._factory()
        _connections[inner] = self
        self._arm(self._door.limits.idle_timeout_s, self._idle_expired)
        inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        inner = self._inner
        if inner is None or self.cut:
            return  # refused at connect, or the body was cut: dropped
        self._received += len(data)
        phase = self._phase
        if phase is _Phase.IDLE:
            # pipelined requests are refused one after the other while the door stays full
            while self._fast and self._door.full(RequestKind.INFERENCE):
                taken = self._refuse_fast(data, inner)
                if not taken:
                    break
                if taken == len(data):
                    return
                data = data[taken:]
            self._first_byte_ns = time.perf_counter_ns()
            self._phase = _Phase.HEADERS
            self._arm(self._door.limits.header_timeout_s, self._headers_expired)
        elif phase is _Phase.BODY and self._chunked:
            door = self._door
            if not door.body_fits(len(data)):
                self._cut()
                return
            door.reserve_body(len(data))
            self._held += len(data)
        inner.data_received(data)
        request = self._request
        if self._phase is _Phase.BODY and request is not None and request.content.is_eof():
            self._handling()

    def _refuse_fast(self, data: bytes, inner: asyncio.Protocol) -> int:
        """Refuse the inference request at the start of ``data`` for the in-flight limit, if
        it is all there and plain (see the module docstring); the bytes it took, 0 if none.
        Only such a request asks the door (``at_cap`` tells the adaptive limit it binds), as the
        middleware would have."""
        end = data.find(b"\r\n\r\n", 0, _FAST_HEAD_MAX)
        if end < 0:
            return 0
        head = data[:end].split(b"\r\n")
        parts = head[0].split(b" ")
        if (
            len(parts) != 3
            or parts[0] != b"POST"
            or parts[2] != b"HTTP/1.1"
            or not parts[1].startswith(b"/v2/models/")
            or not parts[1].split(b"?", 1)[0].endswith(b"/infer")
        ):
            return 0
        length = -1
        for line in head[1:]:
            name, _, value = line.partition(b":")
            key = name.strip().lower()
            if key == b"content-length":
                if length >= 0 or not value.strip().isdigit():
                    return 0  # twice, or not a number: aiohttp answers that
                length = int(value)
            elif key in _FAST_NO:
                return 0
        taken = end + 4 + length
        if length < 0 or taken > len(data):
            return 0
        door = self._door
        refusal = door.at_cap(RequestKind.INFERENCE)
        if refusal is None or self._transport is None:
            return 0
        door.refused(refusal, 0)
        body = _error_body(door.at_cap_message(RequestKind.INFERENCE), refusal.value)
        self._transport.write(_FAST_REFUSAL % (len(body), body))
        self._arm(door.limits.idle_timeout_s, self._idle_expired)
        # aiohttp's keep-alive backstop counts from the last request it saw: this one counts
        handler: Any = inner
        timeout = getattr(handler, "_keepalive_timeout", None)
        if isinstance(timeout, float | int) and hasattr(handler, "_next_keepalive_close_time"):
            handler._next_keepalive_close_time = self._loop.time() + timeout
        return taken

    def eof_received(self) -> bool | None:
        if self._inner is None:
            if self._transport is not None:
                self._transport.close()
            return None
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self._writing()
        self._phase = _Phase.CLOSED
        inner = self._inner
        if inner is None:
            return
        self._door.open_connections["http"] -= 1
        self.release()
        _connections.pop(inner, None)
        inner.connection_lost(exc)
        draining = self._draining
        if draining is not None and not draining.content.is_eof():
            # nothing more will come: aiohttp's drain of the refused body ends now, not at
            # the end of ``linger_s``
            draining.content.feed_eof()

    def pause_writing(self) -> None:
        if self._write_timer is None and self._phase is not _Phase.CLOSED:
            self._arm_write()
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._writing()
        if self._inner is not None:
            self._inner.resume_writing()

    def _writing(self) -> None:
        """The socket takes what is written again (or is gone): no write timeout."""
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _arm_write(self) -> None:
        self._write_left = self._transport.get_write_buffer_size() if self._transport else 0
        self._write_timer = self._loop.call_later(
            self._door.limits.write_timeout_s, self._write_expired
        )

    def _write_expired(self) -> None:
        """Nothing more of an answer was sent for ``write_timeout_s`` (the client reads
        nothing): drop it (an orderly close would wait for ever to send it). A client that
        reads slowly keeps its connection."""
        self._write_timer = None
        transport = self._transport
        if transport is not None and transport.get_write_buffer_size() < self._write_left:
            self._arm_write()  # some of it went: a slow reader, not a stalled one
            return
        self._door.timed_out(Timeout.WRITE)
        _log.debug("aborting a connection: its client stopped reading")
        if self._transport is not None:
            self._transport.abort()

    # ----------------------------------------------------------------- the middleware's calls

    def take_first_byte_ns(self) -> int:
        """When the current request's first byte arrived (perf_counter_ns), or 0 when that
        is not known (a pipelined request arrived while the one before was handled)."""
        first, self._first_byte_ns = self._first_byte_ns, 0
        return first

    def request_started(self, request: web.BaseRequest, held_bytes: int) -> None:
        """Headers parsed and the request admitted, holding ``held_bytes`` of the door's
        body bound (its Content-Length; 0 when chunked, counted as it arrives)."""
        self._request = request
        self._held = held_bytes
        self._chunked = request.content_length is None and request.body_exists
        if request.content.is_eof():
            self._handling()
            return
        self._phase = _Phase.BODY
        self._body_start = self._loop.time()
        self._body_mark = self._received
        self._arm(self._door.limits.body_timeout_s, self._body_check)

    def request_refused(self, request: web.BaseRequest) -> None:
        """Refused before its body was read: aiohttp drains the body (``linger_s``) and closes."""
        self._cancel()
        self._phase = _Phase.HANDLING
        self._draining = request

    def release(self) -> None:
        if self._held:
            self._door.release_body(self._held)
            self._held = 0

    def request_done(self) -> None:
        self.release()
        self._request = None
        self._chunked = False
        if self._draining is not None:
            return  # refused mid-body: the rest drains, then the connection closes
        if self._phase is not _Phase.CLOSED:
            self._phase = _Phase.IDLE
            self._arm(self._door.limits.idle_timeout_s, self._idle_expired)

    # ----------------------------------------------------------------- timers

    def _arm(self, delay_s: float, callback: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(delay_s, callback)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _handling(self) -> None:
        self._cancel()
        self._phase = _Phase.HANDLING

    def _close(self, why: Timeout) -> None:
        self._timer = None
        self._door.timed_out(why)
        _log.debug("closing a connection: no complete %s in time", why.value)
        if self._transport is not None:
            self._transport.close()

    def _idle_expired(self) -> None:
        if self._phase is _Phase.IDLE:
            self._close(Timeout.IDLE)

    def _headers_expired(self) -> None:
        if self._phase is _Phase.HEADERS:
            self._close(Timeout.HEADERS)

    def _body_check(self) -> None:
        self._timer = None
        request = self._request
        if self._phase is not _Phase.BODY or request is None:
            return
        if request.content.is_eof():
            self._handling()
            return
        limits = self._door.limits
        got = self._received - self._body_mark
        # the body must have reached ``rate * (elapsed - grace)`` bytes; next check when the
        # bytes received so far stop being enough
        due_s = limits.body_timeout_s + got / limits.min_body_rate_bytes_per_s
        elapsed_s = self._loop.time() - self._body_start
        if elapsed_s >= due_s:
            self._close(Timeout.BODY)
            return
        self._arm(max(due_s - elapsed_s, _MIN_CHECK_S), self._body_check)

    def _cut(self) -> None:
        """A chunked body crossed the bound: the reading handler gets a 503, nothing more is
        read, and the connection closes after the answer."""
        self.cut = True
        self._door.refused(Refusal.BODY_MEMORY)
        self._handling()
        if self._transport is not None:
            self._transport.pause_reading()
        if self._request is not None:
            self._request.content.set_exception(_body_memory_error(self._door))


# aiohttp's protocol of each open connection -> its wrapper (the middleware's way in)
_connections: dict[object, _Connection] = {}


def refused_mid_body(request: web.BaseRequest) -> None:
    """``request``'s handler refused it before reading all of its body (its head said enough):
    the rest is drained, not buffered, and the connection closes, as after the door's own
    refusals (the answer must say ``Connection: close``)."""
    conn = _connections.get(request.protocol)
    if conn is not None:
        conn.request_refused(request)


def _body_memory_error(door: Door) -> FrontendError:
    return FrontendError(
        ErrorKind.OVERLOADED,
        f"request bodies in flight would exceed {door.limits.max_inflight_body_bytes} bytes; "
        "retry later",
        Refusal.BODY_MEMORY.value,
    )


class _DoorServer:
    """aiohttp's ``web.Server`` (the protocol factory) with each protocol wrapped."""

    def __init__(self, inner: web.Server, door: Door, fast_refusals: bool) -> None:
        self._inner = inner
        self._door = door
        self._fast = fast_refusals

    def __call__(self) -> asyncio.Protocol:
        return _Connection(self._inner, self._door, self._fast)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class DoorRunner(web.AppRunner):
    """An ``AppRunner`` whose connections go through the door. aiohttp's keep-alive timer stays
    as a backstop, later than the door's own idle and header timers. ``fast_refusals``: the
    connections may refuse a request for the in-flight limit before aiohttp parses it (only
    where inference needs no token: see the module docstring)."""

    def __init__(
        self, app: web.Application, door: Door, *, fast_refusals: bool = False, **kwargs: Any
    ) -> None:
        limits = door.limits
        kwargs.setdefault(
            "keepalive_timeout", limits.idle_timeout_s + limits.header_timeout_s + 1.0
        )
        kwargs.setdefault("lingering_time", limits.linger_s)
        super().__init__(app, **kwargs)
        self._door = door
        self._fast = fast_refusals

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return cast(web.Server, _DoorServer(server, self._door, self._fast))


# --------------------------------------------------------------------------- the middleware


def _refusal(status: int, message: str, reason: str, *, close: bool) -> web.Response:
    resp = web.Response(
        body=_error_body(message, reason), status=status, content_type="application/json"
    )
    if status in (429, 503):
        resp.headers["Retry-After"] = "1"
    if close:
        # the body was not read: the connection cannot carry another request
        resp.force_close()
    return resp


def _is_inference(request: web.Request) -> bool:
    return request.method == "POST" and request.path.endswith("/infer")


def door_middleware(door: Door, server: ModelServer) -> Callable[..., Awaitable[Any]]:
    """The aiohttp middleware of ``door``: admission before the body is read, the body bound,
    and the door's metrics appended to ``/metrics``."""
    limits = door.limits

    def refuse(
        request: web.Request,
        conn: _Connection | None,
        first_byte_ns: int,
        why: Refusal,
        status: int,
        message: str,
        reason: str = "",
    ) -> web.Response:
        """Counted as ``why``, with its time since ``first_byte_ns`` (0: unknown); the error
        body's reason is ``reason``, else ``why``'s."""
        door.refused(why, time.perf_counter_ns() - first_byte_ns if first_byte_ns else None)
        reason = reason or why.value
        if conn is None:
            return _refusal(status, message, reason, close=True)
        if request.content.is_eof():
            # the body is all in (under load, the usual case: it arrived while the request
            # waited): nothing is left to drain, and the connection carries the client's next
            # request rather than costing both ends a new one
            conn.request_done()
            return _refusal(status, message, reason, close=False)
        conn.request_refused(request)
        return _refusal(status, message, reason, close=True)

    @web.middleware
    async def door_admission(request: web.Request, handler: _Handler) -> web.StreamResponse:
        conn = _connections.get(request.protocol)
        kind = RequestKind.INFERENCE if _is_inference(request) else RequestKind.CONTROL
        first_byte_ns = conn.take_first_byte_ns() if conn is not None else 0
        at_cap = door.at_cap(kind)
        if at_cap is not None:
            return refuse(request, conn, first_byte_ns, at_cap, 503, door.at_cap_message(kind))
        if kind is RequestKind.INFERENCE and first_byte_ns:
            request[FIRST_BYTE_NS] = first_byte_ns
            now_ns = time.perf_counter_ns()
            if not door.queue_delay.admit(now_ns - first_byte_ns, now_ns):
                gate = door.queue_delay
                return refuse(
                    request,
                    conn,
                    first_byte_ns,
                    Refusal.QUEUE_DELAY,
                    503,
                    f"the server is behind: this request waited "
                    f"{(now_ns - first_byte_ns) / 1e6:.1f} ms before it was read, and every "
                    f"request has waited over {gate.target_ns / 1e6:g} ms for "
                    f"{gate.interval_ns / 1e6:g} ms; retry later",
                )
        size = request.content_length or 0
        encoding = request.headers.get("Content-Encoding", "identity").lower()
        if size and encoding != "identity":
            # a compressed body may decode to anything up to the body size limit (a gzip
            # bomb: 60 KiB on the wire, 60 MiB decoded): it holds that much of the bound
            size = max(size, min(request.client_max_size, limits.max_inflight_body_bytes))
        if not door.body_fits(size):
            return refuse(
                request,
                conn,
                first_byte_ns,
                Refusal.BODY_MEMORY,
                503 if size <= limits.max_inflight_body_bytes else 413,
                f"a body of {size} bytes would take the bodies in flight past "
                f"{limits.max_inflight_body_bytes} bytes",
            )
        if kind is RequestKind.INFERENCE:
            info = request.match_info
            model = info.get("model", "")
            try:
                ready = server.model_ready(model, info.get("version", ""))
            except FrontendError as e:
                return refuse(
                    request,
                    conn,
                    first_byte_ns,
                    Refusal.MODEL,
                    e.kind.http_status,
                    e.message,
                    e.reason,
                )
            if not ready:
                return refuse(
                    request,
                    conn,
                    first_byte_ns,
                    Refusal.MODEL,
                    503,
                    f"model {model!r} is not ready; retry later",
                )
        door.enter(kind)
        door.reserve_body(size)
        if conn is not None:
            conn.request_started(request, size)
        ticket = None
        if kind is RequestKind.INFERENCE:
            ticket = DoorTicket(first_byte_ns or time.perf_counter_ns())
            token = TICKET.set(ticket)
        try:
            resp = await handler(request)
        finally:
            door.leave(kind)
            if ticket is not None:
                TICKET.reset(token)
                door.settle(ticket, time.perf_counter_ns())
            if conn is not None:
                cut = conn.cut
                conn.request_done()
            else:
                door.release_body(size)
                cut = False
        if first_byte_ns and resp.status in _REFUSED:
            # refused past the door (the scheduler's OVERLOADED, say): the client waited as long
            door.refusal_times.observe(time.perf_counter_ns() - first_byte_ns)
        if cut:
            # nothing more of the body will come: aiohttp must not wait to drain it
            request.content.feed_eof()
            resp.force_close()
        elif request.path == "/metrics" and isinstance(resp, web.Response) and resp.status == 200:
            body = resp.body
            if isinstance(body, bytes):
                resp.body = body + door.metrics_text()
        return resp

    return door_admission
