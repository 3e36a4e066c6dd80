"""A small HTTP/1.1 client for load generation: keep-alive connections over asyncio protocols,
one request at a time on each, pooled per server.

Why not aiohttp's client, which this replaces in ``HttpClient``: a load generator shares the
machine with the server it measures, and every microsecond it spends per request is taken from
that server, or makes the client itself late (requests written and answers read long after their
time, charged to the server as latency). At 900 requests/s on a 2-core host, aiohttp's client took
about 0.35 ms of CPU per request and fell up to 190 ms behind its schedule. Here a request is one
``writelines`` of pre-built bytes and an answer one ``find`` for the end of its head and a slice
of its body.

What it does: ``Content-Length``, chunked and read-until-close bodies; 1xx answers skipped;
``Connection: close`` (and HTTP/1.0 without keep-alive) honoured; a total timeout per request
(waiting for a connection, connecting, sending and reading); TLS from an ``ssl.SSLContext``.
What it does not: redirects, cookies, proxies, pipelining, decompression (the caller asks for
``identity``), retries (a request is never sent twice).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

__all__ = ["Http1Error", "Http1Pool", "Http1Response"]

# a head larger than this is not an answer this client wants
_MAX_HEAD_BYTES = 64 * 1024
_UNTIL_CLOSE = -1
_CHUNKED = -2


class Http1Error(ConnectionError):
    """No valid answer: the connection closed before one, or what came broke HTTP/1.1."""


@dataclass(frozen=True, slots=True)
class Http1Response:
    """An answer: its status, its headers (names in lower case; a repeated header's values
    joined with ``", "``) and its whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


def _parse_head(head: bytes) -> tuple[int, bool, dict[str, str]]:
    """(status, keep-alive by default, headers) of a response head without its blank line."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise Http1Error(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise Http1Error(f"malformed header line: {line[:80]!r}")
        key = name.strip().lower().decode("latin-1")
        text = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return int(parts[1]), parts[0] != b"HTTP/1.0", headers


class _Connection(asyncio.Protocol):
    """One keep-alive connection; ``send`` one request, then wait for its answer."""

    __slots__ = (
        "_body_len",
        "_buf",
        "_chunks",
        "_head",
        "_keep_alive",
        "_pool",
        "_waiter",
        "closed",
        "transport",
    )

    def __init__(self, pool: Http1Pool) -> None:
        self._pool = pool
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buf = bytearray()
        self._waiter: asyncio.Future[Http1Response] | None = None
        self._head: tuple[int, dict[str, str]] | None = None
        self._keep_alive = True
        self._body_len = 0  # bytes of body awaited, or _UNTIL_CLOSE / _CHUNKED
        self._chunks: list[bytes] = []

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not registered as asyncio.Transport subclasses
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            # nothing was asked: a server that speaks out of turn cannot be trusted after it
            self.abort()
            return
        self._buf += data
        try:
            self._parse()
        except Http1Error as e:
            self._fail(e)

    def eof_received(self) -> bool:
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool._lost(self)
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._head is not None and self._body_len == _UNTIL_CLOSE:
            body = bytes(self._buf)
            self._buf.clear()
            self._finish(body)
            return
        self._waiter = None
        why = f": {exc}" if exc is not None else ""
        waiter.set_exception(Http1Error(f"the server closed the connection before answering{why}"))

    # -- requests

    def send(self, head: bytes, body: bytes) -> asyncio.Future[Http1Response]:
        assert self.transport is not None and self._waiter is None
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        self._head = None
        self._keep_alive = True
        self.transport.writelines((head, body) if body else (head,))
        return waiter

    def abort(self) -> None:
        """Drop the connection now (a request on it was given up: it cannot carry another)."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, e: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        self.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(e)

    def _finish(self, body: bytes) -> None:
        assert self._head is not None
        status, headers = self._head
        waiter, self._waiter = self._waiter, None
        if not self._keep_alive or self._buf or "close" in headers.get("connection", "").lower():
            self.abort()  # the server will close it: it carries nothing more
        if waiter is not None and not waiter.done():
            waiter.set_result(Http1Response(status, headers, body))

    def _parse(self) -> None:
        buf = self._buf
        while self._head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD_BYTES:
                    raise Http1Error(f"no end of the answer's head in {len(buf)} bytes")
                return
            status, keep_alive, headers = _parse_head(bytes(buf[:end]))
            del buf[: end + 4]
            if 100 <= status < 200:
                continue  # an interim answer (100 Continue): the real one follows
            self._head = (status, headers)
            self._keep_alive = keep_alive or "keep-alive" in headers.get("connection", "").lower()
            if status in (204, 304):
                self._body_len = 0
            elif "chunked" in headers.get("transfer-encoding", "").lower():
                self._body_len = _CHUNKED
                self._chunks = []
            elif "content-length" in headers:
                try:
                    self._body_len = int(headers["content-length"])
                except ValueError:
                    raise Http1Error(f"bad Content-Length {headers['content-length']!r}") from None
                if self._body_len < 0:
                    raise Http1Error(f"bad Content-Length {self._body_len}")
            else:
                self._body_len = _UNTIL_CLOSE
                self._keep_alive = False
        if self._body_len >= 0:
            if len(buf) >= self._body_len:
                body = bytes(buf[: self._body_len])
                del buf[: self._body_len]
                self._finish(body)
        elif self._body_len == _CHUNKED:
            self._parse_chunks()

    def _parse_chunks(self) -> None:
        buf = self._buf
        while True:
            eol = buf.find(b"\r\n")
            if eol < 0:
                return
            size_text = bytes(buf[:eol]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise Http1Error(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                # trailers (if any) end with an empty line
                end = buf.find(b"\r\n\r\n", eol) if buf[eol + 2 : eol + 4] != b"\r\n" else eol
                if end < 0:
                    return
                del buf[: end + 4]
                self._finish(b"".join(self._chunks))
                return
            if len(buf) < eol + 2 + size + 2:
                return
            self._chunks.append(bytes(buf[eol + 2 : eol + 2 + size]))
            del buf[: eol + 2 + size + 2]


class Http1Pool:
    """Keep-alive connections to one server, at most ``limit`` open at once (a request waits for
    one beyond that). ``headers``: sent with every request (``Host`` is added). Create it
    inside the event loop that uses it."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        limit: int = 256,
        connect_timeout_s: float = 5.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.limit = max(1, limit)
        self.connect_timeout_s = connect_timeout_s
        host_header = f"[{host}]" if ":" in host else host
        default_port = 443 if ssl_context is not None else 80
        if port != default_port:
            host_header += f":{port}"
        fixed = {"Host": host_header, **(headers or {})}
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1")
        self._loop = asyncio.get_running_loop()
        self._idle: list[_Connection] = []  # most recently used last
        self._open = 0  # connections open or being opened
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closing = False

    def head(self, method: str, target: str, headers: bytes, body_len: int) -> bytes:
        """A request's head: ``headers`` are the request's own lines (each ending ``\\r\\n``)."""
        return b"%s %s HTTP/1.1\r\n%s%sContent-Length: %d\r\n\r\n" % (
            method.encode("ascii"),
            target.encode("ascii"),
            self._fixed,
            headers,
            body_len,
        )

    async def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        *,
        headers: bytes = b"",
        timeout_s: float | None = None,
    ) -> Http1Response:
        """Send one request and read its whole answer. ``TimeoutError`` past ``timeout_s``;
        ``Http1Error`` (a ``ConnectionError``) or another ``OSError`` when there was no valid
        answer."""
        head = self.head(method, target, headers, len(body))
        if timeout_s is None:
            return await self._exchange(head, body)
        async with asyncio.timeout(timeout_s):
            return await self._exchange(head, body)

    async def _exchange(self, head: bytes, body: bytes) -> Http1Response:
        conn = await self._acquire()
        try:
            resp = await conn.send(head, body)
        except BaseException:
            conn.abort()  # given up or broken mid-request: its framing is lost
            raise
        self._release(conn)
        return resp

    async def _acquire(self) -> _Connection:
        while True:
            if self._closing:
                raise Http1Error("the client is closed")
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
            if self._open < self.limit:
                return await self._connect()
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, then given up: the turn passes on
                raise

    async def _connect(self) -> _Connection:
        self._open += 1
        conn = _Connection(self)
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await self._loop.create_connection(
                    lambda: conn,
                    self.host,
                    self.port,
                    ssl=self.ssl_context,
                    server_hostname=self.host if self.ssl_context is not None else None,
                )
        except BaseException:
            if conn.transport is not None:
                conn.abort()  # made, then given up: its connection_lost counts it out
            else:
                self._open -= 1
                self._wake_one()
            raise
        return conn

    def _release(self, conn: _Connection) -> None:
        if conn.closed:
            return  # _lost counts it out
        if self._closing:
            conn.abort()
            return
        self._idle.append(conn)
        self._wake_one()

    def _lost(self, conn: _Connection) -> None:
        self._open -= 1
        if conn in self._idle:
            self._idle.remove(conn)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Close every idle connection; those in use close as their requests end."""
        self._closing = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.abort()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        await asyncio.sleep(0)  # let the transports' connection_lost run
