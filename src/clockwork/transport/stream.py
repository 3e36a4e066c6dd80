"""The TCP transport: length-prefixed msgpack frames over asyncio streams.

``connect(host, port)`` opens a ``StreamConnection``; ``serve(host, port, handler)`` accepts
connections and runs ``await handler(conn)`` for each, in its own task. Every connection first
runs the link handshake on the raw socket (``transport.handshake``: both ends prove the cluster
secret, fixed-size messages only); a peer that fails it is closed before any frame is read. A
handler that raises is logged and its connection closed; the server keeps serving. A peer that
sends an oversized length prefix, a truncated frame or bytes that do not decode has its
connection closed (reason logged on
the ``clockwork.transport`` logger) and only that connection.

Not thread-safe: use a connection from the event loop that made it. Several tasks may ``send`` at
once (each frame is written whole, in one synchronous step); one task at a time may ``recv``.
``send_many`` writes several messages in one call (one system call instead of one each).

``recv`` reads whatever the socket has (many small frames at a time) into a buffer of its own and
returns the frames from it one by one, without waiting while a whole one is there; cancelling a
``recv`` loses nothing (what was read stays buffered for the next one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Self

from clockwork.core.clock_sync import ClockSync
from clockwork.core.units import MIB
from clockwork.transport.codec import decode, encode_parts
from clockwork.transport.connection import BaseConnection, ClockNs, log
from clockwork.transport.errors import (
    ConnectionClosedError,
    FrameError,
    HandshakeError,
    ProtocolError,
)
from clockwork.transport.framing import (
    DEFAULT_MAX_FRAME_BYTES,
    HEADER,
    HEADER_BYTES,
    check_frame_length,
    frame_header,
)
from clockwork.transport.handshake import (
    HANDSHAKE_TIMEOUT_S,
    HandshakeClosedError,
    LinkPeer,
    ServerHandshake,
    check_id,
    client_handshake,
)
from clockwork.transport.messages import Message
from clockwork.transport.trim import TRIM_ABOVE_BYTES, release_freed_memory

#: asyncio's stream buffer limit: larger than the default 64 KiB so that big frames arrive in
#: fewer pause/resume rounds
STREAM_LIMIT_BYTES = 1 * MIB
#: how long ``wait_closed`` lets a closing connection flush before aborting it
CLOSE_TIMEOUT_S = 5.0
#: payloads smaller than this are copied behind their header and written in one call
_COALESCE_BYTES = 64 * 1024

#: frames larger than this are written in pieces of at most this size, the loop running other
#: callbacks between pieces: what the socket does not take at once is otherwise copied whole into
#: asyncio's own buffer (or, with ``writelines``, joined first) in one step of the loop, and
#: even uvloop, which keeps the buffers, has the kernel copy as much as the socket takes in one
#: step (a 9 MiB batch of inputs: milliseconds)
WRITE_PIECE_BYTES = 1024 * 1024

#: the messages ``send_many`` left out, each with why
Unsent = list[tuple[Message, ProtocolError]]


def _size(parts: Sequence[bytes | memoryview]) -> int:
    return sum(len(p) for p in parts)


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

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        name: str | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        clock_ns: ClockNs = time.monotonic_ns,
        clock_sync: ClockSync | None = None,
        stamp: bool = True,
        close_timeout_s: float = CLOSE_TIMEOUT_S,
        peer: LinkPeer | None = None,
    ) -> None:
        super().__init__(
            name if name is not None else _peer_name(writer),
            max_frame_bytes=max_frame_bytes,
            clock_ns=clock_ns,
            clock_sync=clock_sync,
            stamp=stamp,
        )
        self._reader = reader
        self._writer = writer
        self.close_timeout_s = close_timeout_s
        #: who the link handshake says is at the other end (None: a connection made without it)
        self.peer = peer
        #: the peer runs on this host and maps shared segments: inputs lying in one are sent
        #: as its name and offset, not as bytes (``codec.encode_parts``)
        self.share_memory = False
        self._send_lock = asyncio.Lock()
        # bytes read and not parsed yet start at ``_pos`` in ``_buf``; ``_rx_ns`` is the local
        # time when the last bytes were read, the receipt time of every frame in them
        self._buf = bytearray()
        self._pos = 0
        self._rx_ns = clock_ns()
        _set_nodelay(writer)

    def _payload(self, msg: Message, stamp: int) -> list[bytes | memoryview]:
        """The payload of ``msg`` as buffers (large tensors' data not copied: ``encode_parts``)."""
        parts = encode_parts(msg, sent_ns=stamp, share=self.share_memory)
        size = sum(len(p) for p in parts)
        if size > self.max_frame_bytes:
            raise ProtocolError(
                f"{type(msg).__name__} of {size} bytes exceeds the frame "
                f"limit of {self.max_frame_bytes}; not sent"
            )
        return parts

    def _frames(self, msgs: Sequence[Message]) -> tuple[list[bytes | memoryview], Unsent]:
        """The frames of ``msgs`` as buffers to write in order (small frames joined into one),
        and the messages left out with their error."""
        # one stamp for all: they are written at the same moment
        now = self._clock_ns() if self._stamp else None
        failed: Unsent = []
        parts: list[bytes | memoryview] = []
        large = False
        for msg in msgs:
            try:
                payload = self._payload(msg, msg.sent_ns if now is None else now)
            except ProtocolError as e:
                failed.append((msg, e))
                continue
            parts.append(HEADER.pack(sum(len(p) for p in payload)))
            parts += payload
            large = large or len(payload) > 1
        if not large and len(parts) > 1:
            parts = [b"".join(parts)]
        return parts, failed

    async def send_many(self, msgs: Sequence[Message]) -> Unsent:
        """Send ``msgs`` in order, in one write (for many small frames: one system call, not
        one each). Each is stamped and checked as ``send`` does; those that cannot be encoded
        or exceed the frame limit are left out, the others sent, and ``(message, error)`` is
        returned for each left out. ``ConnectionClosedError`` as ``send``."""
        if self.closed:
            raise self._closed_error()
        data, failed = self._frames(msgs)
        if not data:
            return failed
        try:
            async with self._send_lock:
                if self.closed:
                    raise self._closed_error()
                await self._write(data)
        except (ConnectionError, OSError, RuntimeError) as e:
            self._mark_closed(f"send failed: {type(e).__name__}: {e}", logging.INFO)
            raise self._closed_error() from e
        return failed

    def send_nowait(self, msgs: Sequence[Message]) -> Unsent | None:
        """``send_many`` without waiting, when it would not have to wait: nobody else is
        sending and the transport's buffer is empty (so it holds at most these frames
        afterwards, as ``send`` keeps it). Returns None, having sent nothing, otherwise."""
        if self.closed:
            raise self._closed_error()
        if self._send_lock.locked() or self._writer.transport.get_write_buffer_size():
            return None
        data, failed = self._frames(msgs)
        if _size(data) > WRITE_PIECE_BYTES:
            return None  # written in pieces by ``send_many``, which can wait between them
        if data:
            try:
                self._writer.writelines(data)
            except (ConnectionError, OSError, RuntimeError) as e:
                self._mark_closed(f"send failed: {type(e).__name__}: {e}", logging.INFO)
                raise self._closed_error() from e
        return failed

    async def send(self, msg: Message) -> None:
        if self.closed:
            raise self._closed_error()
        payload = self._payload(msg, self._send_stamp(msg))
        size = sum(len(p) for p in payload)
        header = frame_header(size)
        try:
            # one writer at a time, each waiting for the buffer to drain before the next writes:
            # the transport's buffer then never holds more than about one frame (a deep buffer
            # costs a memmove of all of it on every partial socket write)
            async with self._send_lock:
                if self.closed:
                    raise self._closed_error()
                if size < _COALESCE_BYTES:
                    self._writer.write(b"".join([header, *payload]))
                    await self._writer.drain()
                else:
                    await self._write([header, *payload])
        except (ConnectionError, OSError, RuntimeError) as e:
            # RuntimeError: asyncio refuses writes on a transport that is closing
            self._mark_closed(f"send failed: {type(e).__name__}: {e}", logging.INFO)
            raise self._closed_error() from e

    async def _write(self, parts: Sequence[bytes | memoryview]) -> None:
        """Write ``parts`` (the send lock held): at once if small, else in pieces of at most
        ``WRITE_PIECE_BYTES``, each drained and followed by a turn of the loop."""
        writer = self._writer
        if _size(parts) <= WRITE_PIECE_BYTES:
            writer.writelines(parts)
            await writer.drain()
            return
        pending = 0  # bytes written since the loop last ran something else
        for part in parts:
            view = memoryview(part)
            start = 0
            while start < len(view):
                piece = view[start : start + WRITE_PIECE_BYTES - pending]
                writer.write(piece)
                start += len(piece)
                pending += len(piece)
                if pending >= WRITE_PIECE_BYTES:
                    pending = 0
                    await writer.drain()
                    await asyncio.sleep(0)
                    if self.closed:
                        raise self._closed_error()
        await writer.drain()

    async def recv(self) -> Message:
        while True:
            if self.closed:
                raise self._closed_error()
            msg = self._buffered()
            if msg is not None:
                return msg
            try:
                data = await self._reader.read(STREAM_LIMIT_BYTES)
            except (ConnectionError, OSError) as e:
                where = " mid-frame" if self._pos < len(self._buf) else ""
                self._mark_closed(f"connection lost{where}: {type(e).__name__}: {e}", logging.INFO)
                raise self._closed_error() from None
            self._rx_ns = self._clock_ns()
            if not data:
                raise self._at_eof()
            if self._pos:  # drop what was parsed before growing the buffer
                del self._buf[: self._pos]
                self._pos = 0
            self._buf += data

    @property
    def last_rx_ns(self) -> int:
        """When bytes last arrived (our clock); when the connection was made, before any."""
        return self._rx_ns

    def has_buffered_frame(self) -> bool:
        """Whether a whole frame is buffered already (the next ``recv`` will not wait)."""
        buf, pos = self._buf, self._pos
        if len(buf) - pos < HEADER_BYTES:
            return False
        length: int
        (length,) = HEADER.unpack_from(buf, pos)
        return len(buf) >= pos + HEADER_BYTES + length

    def _buffered(self) -> Message | None:
        """The next message if a whole frame of it is buffered, else None."""
        buf, pos = self._buf, self._pos
        if len(buf) - pos < HEADER_BYTES:
            return None
        (length,) = HEADER.unpack_from(buf, pos)
        try:
            check_frame_length(length, self.max_frame_bytes)
        except FrameError as e:
            raise self._fail(str(e)) from None
        start = pos + HEADER_BYTES
        end = start + length
        if len(buf) < end:
            return None
        payload = buf[start:end]
        if end == len(buf):
            buf.clear()
            self._pos = 0
        else:
            self._pos = end
        try:
            msg = decode(payload)
        except ProtocolError as e:
            del payload
            # nothing more will be read: drop what is buffered, and give a large frame's memory
            # (and what decoding it built) back at once
            self._buf = bytearray()
            self._pos = 0
            if length >= TRIM_ABOVE_BYTES:
                release_freed_memory()
            raise self._fail(f"undecodable frame of {length} bytes: {e}") from None
        return self._received(msg, self._rx_ns)

    def _at_eof(self) -> ConnectionClosedError:
        """The stream ended: cleanly between frames, else in the middle of one."""
        left = len(self._buf) - self._pos
        if not left:
            self._mark_closed("peer closed the connection", logging.INFO)
            return self._closed_error()
        if left < HEADER_BYTES:
            return self._fail(
                f"truncated frame header: stream ended after {left} of {HEADER_BYTES} bytes"
            )
        (length,) = HEADER.unpack_from(self._buf, self._pos)
        return self._fail(
            f"truncated frame: stream ended after {left - HEADER_BYTES} of {length} payload bytes"
        )

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


async def _open_socket(host: str, port: int) -> socket.socket:
    """A connected non-blocking TCP socket to ``host:port`` (each resolved address in turn)."""
    loop = asyncio.get_running_loop()
    numeric = _numeric_address(host, port)
    infos: list[_AddrInfo] = (
        numeric
        if numeric is not None  # a name is resolved in a thread (as asyncio does)
        else [
            (int(f), int(t), p, c, tuple(a))
            for f, t, p, c, a in await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        ]
    )
    errors: list[OSError] = []
    for family, type_, proto, _, addr in infos:
        sock = socket.socket(family, type_, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, addr)
        except OSError as e:
            sock.close()
            errors.append(e)
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    if len(errors) == 1:
        raise errors[0]
    raise OSError(
        f"could not connect to {host}:{port}: {'; '.join(map(str, errors)) or 'no address'}"
    )


_AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]


def _numeric_address(host: str, port: int) -> list[_AddrInfo] | None:
    """``getaddrinfo``'s answer for a numeric IPv4 or IPv6 ``host``, without asking it (it runs
    in a thread: a tenth of a millisecond or more per connect); None for a name."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        addr: tuple[Any, ...] = (host, port) if family == socket.AF_INET else (host, port, 0, 0)
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", addr)]
    return None


def _format_address(addr: object) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr)


async def connect(
    host: str,
    port: int,
    *,
    name: str | None = None,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    clock_ns: ClockNs = time.monotonic_ns,
    clock_sync: ClockSync | None = None,
    secret: bytes | None = None,
    sender_id: str = "",
    take_over: bool = False,
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
) -> StreamConnection:
    """Open a TCP connection to a ``serve``-ing peer and run the link handshake as the controller
    (``transport.handshake``): ``sender_id`` is our id, ``secret`` the cluster secret (None: the
    insecure mode, which only a peer without a secret accepts), ``take_over`` asks a worker that
    serves another controller to switch to us. Raises ``OSError`` if the connection cannot be
    made, ``HandshakeError`` (an ``OSError`` too, logged here as a warning) if the peer fails
    the handshake or ``LinkRefusedError`` if it refuses us; nothing is decoded before it."""
    check_id(sender_id)
    address = f"{host}:{port}"
    sock = await _open_socket(host, port)
    try:
        try:
            async with asyncio.timeout(handshake_timeout_s):
                peer = await client_handshake(
                    sock, address=address, sender_id=sender_id, secret=secret, take_over=take_over
                )
        except TimeoutError:
            raise HandshakeError(
                f"no link handshake from {address} within {handshake_timeout_s:.1f} s"
            ) from None
        except HandshakeError:
            raise
        except OSError as e:
            raise HandshakeError(
                f"connection to {address} lost during the link handshake: {e}"
            ) from e
        reader, writer = await asyncio.open_connection(sock=sock, limit=STREAM_LIMIT_BYTES)
    except HandshakeError as e:
        sock.close()
        log.warning("link to %s not made: %s", address, e)
        raise
    except BaseException:
        sock.close()
        raise
    return StreamConnection(
        reader,
        writer,
        name=name or f"to {address}",
        max_frame_bytes=max_frame_bytes,
        clock_ns=clock_ns,
        clock_sync=clock_sync,
        peer=peer,
    )


Handler = Callable[[StreamConnection], Awaitable[None]]
#: decides whether a connection that passed the handshake is served (``conn.peer`` says who):
#: None to serve it, else the reason it is refused (sent to the peer in the verdict)
Admit = Callable[[StreamConnection], str | None]
#: how many connections may wait in ``listen`` for ``accept``
LISTEN_BACKLOG = 128
#: link handshakes in progress at once; a connection beyond them is closed unread (a flood of
#: connections that never finish the handshake would otherwise hold a task and a socket each
#: for the handshake timeout, and the real controller could not get in)
MAX_PENDING_HANDSHAKES = 64


class Server:
    """Listening sockets whose connections each run the link handshake, then ``handler``
    (made by ``serve``)."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_frame_bytes: int,
        clock_ns: ClockNs,
        clock_sync_factory: Callable[[], ClockSync] | None,
        secret: bytes | None = None,
        server_id: str = "",
        admit: Admit | None = None,
        handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
        max_pending_handshakes: int = MAX_PENDING_HANDSHAKES,
    ) -> None:
        check_id(server_id)
        if max_pending_handshakes < 1:
            raise ValueError(f"max_pending_handshakes must be >= 1, got {max_pending_handshakes}")
        self._handler = handler
        self._max_pending_handshakes = max_pending_handshakes
        self._pending_handshakes = 0
        self._max_frame_bytes = max_frame_bytes
        self._clock_ns = clock_ns
        self._clock_sync_factory = clock_sync_factory
        self._secret = secret
        self._server_id = server_id
        self._admit = admit
        self._handshake_timeout_s = handshake_timeout_s
        self._sockets: list[socket.socket] = []
        self._acceptors: list[asyncio.Task[None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.connections: set[StreamConnection] = set()
        #: connections that passed the handshake and were served
        self.accepted = 0
        #: connections closed before any frame: a failed handshake, or refused by ``admit``
        self.refused = 0
        #: of those, closed unread because ``max_pending_handshakes`` were in progress
        self.refused_busy = 0

    async def _start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        seen: set[tuple[int, object]] = set()
        try:
            for family, type_, proto, _, addr in infos:
                if (family, addr) in seen:
                    continue
                seen.add((family, addr))
                sock = socket.socket(family, type_, proto)
                self._sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(addr)
                sock.listen(LISTEN_BACKLOG)
                sock.setblocking(False)
        except OSError:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()
            raise
        if not self._sockets:
            raise OSError(f"{host}:{port} resolves to no address to listen on")
        self._acceptors = [
            asyncio.create_task(
                self._accept_loop(s), name=f"accept {_format_address(s.getsockname())}"
            )
            for s in self._sockets
        ]

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound (the first socket's)."""
        if not self._sockets or self._closed:
            raise RuntimeError("server is not listening")
        addr = self._sockets[0].getsockname()
        return str(addr[0]), int(addr[1])

    @property
    def port(self) -> int:
        return self.address[1]

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, addr = await loop.sock_accept(listener)
            except OSError as e:
                if self._closed:
                    return
                # out of descriptors, say: try again shortly rather than spin
                log.warning("accept failed: %s: %s", type(e).__name__, e)
                await asyncio.sleep(0.1)
                continue
            if self._pending_handshakes >= self._max_pending_handshakes:
                sock.close()
                self.refused += 1
                self.refused_busy += 1
                if self.refused_busy == 1 or self.refused_busy % 1000 == 0:
                    log.warning(
                        "link from %s closed unread: %d handshakes in progress, the limit "
                        "(%d such so far)",
                        _format_address(addr),
                        self._pending_handshakes,
                        self.refused_busy,
                    )
                continue
            sock.setblocking(False)
            self._pending_handshakes += 1
            task = asyncio.create_task(
                self._on_socket(sock, _format_address(addr)), name=f"link from {addr}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _on_socket(self, sock: socket.socket, address: str) -> None:
        handshake = ServerHandshake(self._secret, self._server_id)
        try:
            try:
                async with asyncio.timeout(self._handshake_timeout_s):
                    peer = await handshake.accept(sock, address)
            except TimeoutError:
                raise HandshakeError(
                    f"no complete link handshake within {self._handshake_timeout_s:.1f} s"
                ) from None
            finally:
                self._pending_handshakes -= 1
            reader, writer = await asyncio.open_connection(sock=sock, limit=STREAM_LIMIT_BYTES)
        except HandshakeError as e:
            sock.close()
            self.refused += 1
            # a peer that connects and leaves without a byte is a port probe: not worth a warning
            level = logging.INFO if isinstance(e, HandshakeClosedError) else logging.WARNING
            log.log(level, "link from %s closed before any frame: %s", address, e)
            return
        except OSError as e:
            sock.close()
            self.refused += 1
            log.info("link from %s lost during the handshake: %s: %s", address, type(e).__name__, e)
            return
        except BaseException:
            sock.close()
            raise
        sync = self._clock_sync_factory() if self._clock_sync_factory is not None else None
        conn = StreamConnection(
            reader,
            writer,
            name=f"from {address}",
            max_frame_bytes=self._max_frame_bytes,
            clock_ns=self._clock_ns,
            clock_sync=sync,
            peer=peer,
        )
        self.connections.add(conn)
        try:
            refusal = self._admission(conn)
            writer.write(handshake.verdict(refusal))
            if refusal is not None:
                self.refused += 1
                conn.close(f"refused: {refusal}")
                return
            self.accepted += 1
            await self._run_handler(conn)
        finally:
            conn.close("handler finished")
            self.connections.discard(conn)
            with contextlib.suppress(asyncio.CancelledError):
                await conn.wait_closed()

    def _admission(self, conn: StreamConnection) -> str | None:
        if self._admit is None:
            return None
        try:
            return self._admit(conn)
        except Exception as e:
            log.exception("admission of connection %s failed", conn.name)
            return f"internal error: {type(e).__name__}"

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
        self._closed = True
        for acceptor in self._acceptors:
            acceptor.cancel()
        for sock in self._sockets:
            sock.close()
        for conn in list(self.connections):
            conn.abort(reason)
        for task in list(self._tasks):
            task.cancel()

    async def wait_closed(self) -> None:
        pending = [*self._acceptors, *self._tasks]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()


async def serve(
    host: str,
    port: int,
    handler: Handler,
    *,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    clock_ns: ClockNs = time.monotonic_ns,
    clock_sync_factory: Callable[[], ClockSync] | None = None,
    secret: bytes | None = None,
    server_id: str = "",
    admit: Admit | None = None,
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
    max_pending_handshakes: int = MAX_PENDING_HANDSHAKES,
) -> Server:
    """Listen on ``host:port`` (port 0: any free port, see ``Server.port``). Each connection runs
    the link handshake as the worker (``server_id`` our id, ``secret`` the cluster secret, None
    for the insecure mode), then ``admit`` decides (default: serve it), then
    ``await handler(conn)`` runs in a task of its own. A connection that fails the handshake is
    closed, logged, having had at most ``MAX_HANDSHAKE_READ_BYTES`` read and nothing decoded; one
    that comes while ``max_pending_handshakes`` are in progress is closed unread."""
    server = Server(
        handler,
        max_frame_bytes=max_frame_bytes,
        clock_ns=clock_ns,
        clock_sync_factory=clock_sync_factory,
        secret=secret,
        server_id=server_id,
        admit=admit,
        handshake_timeout_s=handshake_timeout_s,
        max_pending_handshakes=max_pending_handshakes,
    )
    await server._start(host, port)
    return server


__all__ = [
    "STREAM_LIMIT_BYTES",
    "Admit",
    "Handler",
    "Server",
    "StreamConnection",
    "connect",
    "serve",
]
