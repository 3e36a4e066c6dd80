"""The TCP transport: length-prefixed msgpack frames over asyncio streams.

``connect(host, port)`` opens a ``StreamConnection``; ``serve(host, port, handler)`` accepts
connections and runs ``await handler(conn)`` for each, in its own task. A handler that raises is
logged and its connection closed; the server keeps serving. A peer that sends an oversized length
prefix, a truncated frame or bytes that do not decode has its connection closed (reason logged on
the ``clockwork.transport`` logger) and only that connection.

Not thread-safe: use a connection from the event loop that made it. Several tasks may ``send`` at
once (each frame is written whole, in one synchronous step); one task at a time may ``recv``.
Cancelling a ``recv`` between a frame's header and its payload closes the connection, since the
stream would otherwise be out of step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from clockwork.core.clock_sync import ClockSync
from clockwork.core.units import MIB
from clockwork.transport.codec import decode, encode
from clockwork.transport.connection import BaseConnection, ClockNs, log
from clockwork.transport.errors import ConnectionClosedError, FrameError, ProtocolError
from clockwork.transport.framing import (
    DEFAULT_MAX_FRAME_BYTES,
    frame_header,
    read_frame_header,
    read_frame_payload,
)
from clockwork.transport.messages import Message

#: asyncio's stream buffer limit: larger than the default 64 KiB so that big frames arrive in
#: fewer pause/resume rounds
STREAM_LIMIT_BYTES = 1 * MIB
#: how long ``wait_closed`` lets a closing connection flush before aborting it
CLOSE_TIMEOUT_S = 5.0
#: payloads smaller than this are copied behind their header and written in one call
_COALESCE_BYTES = 64 * 1024


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


def _set_nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class StreamConnection(BaseConnection):
    """One connection over an asyncio stream pair (see the module doc and ``Connection``)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 name: str | None = None, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 clock_ns: ClockNs = time.monotonic_ns, clock_sync: ClockSync | None = None,
                 stamp: bool = True, close_timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        super().__init__(name if name is not None else _peer_name(writer),
                         max_frame_bytes=max_frame_bytes, clock_ns=clock_ns,
                         clock_sync=clock_sync, stamp=stamp)
        self._reader = reader
        self._writer = writer
        self.close_timeout_s = close_timeout_s
        self._send_lock = asyncio.Lock()
        _set_nodelay(writer)

    async def send(self, msg: Message) -> None:
        if self.closed:
            raise self._closed_error()
        payload = encode(msg, sent_ns=self._send_stamp(msg))
        if len(payload) > self.max_frame_bytes:
            raise ProtocolError(f"{type(msg).__name__} of {len(payload)} bytes exceeds the frame "
                                f"limit of {self.max_frame_bytes}; not sent")
        header = frame_header(len(payload))
        try:
            # one writer at a time, each waiting for the buffer to drain before the next writes:
            # the transport's buffer then never holds more than about one frame (a deep buffer
            # costs a memmove of all of it on every partial socket write)
            async with self._send_lock:
                if self.closed:
                    raise self._closed_error()
                if len(payload) < _COALESCE_BYTES:
                    self._writer.write(header + payload)
                else:
                    self._writer.write(header)
                    self._writer.write(payload)
                await self._writer.drain()
        except (ConnectionError, OSError, RuntimeError) as e:
            # RuntimeError: asyncio refuses writes on a transport that is closing
            self._mark_closed(f"send failed: {type(e).__name__}: {e}", logging.INFO)
            raise self._closed_error() from e

    async def recv(self) -> Message:
        if self.closed:
            raise self._closed_error()
        try:
            length = await read_frame_header(self._reader, self.max_frame_bytes)
        except FrameError as e:
            raise self._fail(str(e)) from None
        except (ConnectionError, OSError) as e:
            self._mark_closed(f"connection lost: {type(e).__name__}: {e}", logging.INFO)
            raise self._closed_error() from None
        if length is None:
            self._mark_closed("peer closed the connection", logging.INFO)
            raise self._closed_error()
        try:
            payload = await read_frame_payload(self._reader, length)
        except FrameError as e:
            raise self._fail(str(e)) from None
        except (ConnectionError, OSError) as e:
            self._mark_closed(f"connection lost mid-frame: {type(e).__name__}: {e}",
                              logging.INFO)
            raise self._closed_error() from None
        except asyncio.CancelledError:
            self._mark_closed("recv cancelled mid-frame", logging.INFO)
            raise
        try:
            msg = decode(payload)
        except ProtocolError as e:
            raise self._fail(f"undecodable frame of {length} bytes: {e}") from None
        return self._received(msg)

    def _on_close(self, abort: bool) -> None:
        if abort:
            self._writer.transport.abort()
        else:
            self._writer.close()

    async def wait_closed(self) -> None:
        """Wait until the socket is released. After ``close``, a peer that does not read what
        is left to flush gets ``close_timeout_s``; then the connection is aborted."""
        waiter = asyncio.ensure_future(self._writer.wait_closed())
        if self.closed:
            done, _ = await asyncio.wait({waiter}, timeout=self.close_timeout_s)
            if not done:
                self.abort("flush on close timed out")  # already closed: aborts the transport
        with contextlib.suppress(ConnectionError, OSError):
            await waiter


async def connect(host: str, port: int, *, name: str | None = None,
                  max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                  clock_ns: ClockNs = time.monotonic_ns,
                  clock_sync: ClockSync | None = None) -> StreamConnection:
    """Open a TCP connection to a ``serve``-ing peer."""
    reader, writer = await asyncio.open_connection(host, port, limit=STREAM_LIMIT_BYTES)
    return StreamConnection(reader, writer, name=name or f"to {host}:{port}",
                            max_frame_bytes=max_frame_bytes, clock_ns=clock_ns,
                            clock_sync=clock_sync)


Handler = Callable[[StreamConnection], Awaitable[None]]


class Server:
    """A listening socket whose connections each run ``handler`` (made by ``serve``)."""

    def __init__(self, handler: Handler, *, max_frame_bytes: int,
                 clock_ns: ClockNs, clock_sync_factory: Callable[[], ClockSync] | None) -> None:
        self._handler = handler
        self._max_frame_bytes = max_frame_bytes
        self._clock_ns = clock_ns
        self._clock_sync_factory = clock_sync_factory
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections: set[StreamConnection] = set()
        self.accepted = 0

    async def _start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._on_client, host, port,
                                                  limit=STREAM_LIMIT_BYTES)

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound (the first socket's)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server is not listening")
        addr = self._server.sockets[0].getsockname()
        return str(addr[0]), int(addr[1])

    @property
    def port(self) -> int:
        return self.address[1]

    async def _on_client(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        # asyncio runs this in a task of its own, which must not end cancelled (python 3.11's
        # stream protocol calls task.exception() on it): the handler runs in a task of ours,
        # which ``close`` may cancel, and this one only waits for it
        sync = self._clock_sync_factory() if self._clock_sync_factory is not None else None
        conn = StreamConnection(reader, writer, name=f"from {_peer_name(writer)}",
                                max_frame_bytes=self._max_frame_bytes, clock_ns=self._clock_ns,
                                clock_sync=sync)
        self.connections.add(conn)
        self.accepted += 1
        task = asyncio.create_task(self._run_handler(conn), name=f"handler {conn.name}")
        self._tasks.add(task)
        try:
            await asyncio.wait({task})
        finally:
            conn.close("handler finished")
            self.connections.discard(conn)
            self._tasks.discard(task)
            with contextlib.suppress(asyncio.CancelledError):
                await conn.wait_closed()

    async def _run_handler(self, conn: StreamConnection) -> None:
        try:
            await self._handler(conn)
        except ConnectionClosedError:
            pass
        except Exception as e:
            log.exception("handler for connection %s failed", conn.name)
            conn.close(f"handler failed: {type(e).__name__}: {e}")

    def close(self, reason: str = "server shutting down") -> None:
        """Stop listening, abort every connection and cancel the handlers."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.abort(reason)
        for task in list(self._tasks):
            task.cancel()

    async def wait_closed(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.close()
        await self.wait_closed()


async def serve(host: str, port: int, handler: Handler, *,
                max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                clock_ns: ClockNs = time.monotonic_ns,
                clock_sync_factory: Callable[[], ClockSync] | None = None) -> Server:
    """Listen on ``host:port`` (port 0: any free port, see ``Server.port``) and run
    ``await handler(conn)`` for every connection accepted."""
    server = Server(handler, max_frame_bytes=max_frame_bytes, clock_ns=clock_ns,
                    clock_sync_factory=clock_sync_factory)
    await server._start(host, port)
    return server


__all__ = ["STREAM_LIMIT_BYTES", "Handler", "Server", "StreamConnection", "connect",
           "serve"]
