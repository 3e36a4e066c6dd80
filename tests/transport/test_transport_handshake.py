"""The link handshake on real loopback sockets: nothing is decoded before both ends proved the
cluster secret, and a peer that sends anything else is closed after a few hundred bytes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Coroutine
from typing import Any

import pytest

from clockwork.transport import (
    PROTOCOL_VERSION,
    HandshakeError,
    Hello,
    LinkRefusedError,
    Ping,
    Pong,
    Role,
    StreamConnection,
    connect,
    encode,
    pong_for,
    serve,
)
from clockwork.transport import stream as stream_module
from clockwork.transport.handshake import (
    HELLO_BYTES,
    MAC_BYTES,
    MAX_HANDSHAKE_READ_BYTES,
    LinkRole,
    ServerHandshake,
    mac,
    new_hello,
)

HOST = "127.0.0.1"
SECRET = b"s" * 32
OTHER = b"o" * 32


def run(coro: Coroutine[Any, Any, None]) -> None:
    with asyncio.Runner() as runner:
        runner.run(asyncio.wait_for(coro, 20))


class Calls:
    """A handler that answers pings and counts the connections it was given."""

    def __init__(self) -> None:
        self.n = 0

    async def __call__(self, conn: StreamConnection) -> None:
        self.n += 1
        async for msg in conn:
            if isinstance(msg, Ping):
                await conn.send(pong_for(msg))


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make every frame decode on a stream connection count (each one's length)."""
    seen: list[int] = []
    real = stream_module.decode  # type: ignore[attr-defined]

    def counting(data: Any) -> Any:
        seen.append(len(data))
        return real(data)

    monkeypatch.setattr(stream_module, "decode", counting)
    return seen


async def read_until_closed(reader: asyncio.StreamReader, timeout_s: float = 5.0) -> bytes:
    """What the peer sent before it closed (a close with our bytes unread is a reset)."""
    got = bytearray()
    async with asyncio.timeout(timeout_s):
        try:
            while data := await reader.read(65536):
                got += data
        except ConnectionResetError:
            pass
    return bytes(got)


def test_matching_secrets_link_and_carry_frames() -> None:
    async def main() -> None:
        handler = Calls()
        async with await serve(HOST, 0, handler, secret=SECRET, server_id="w9") as server:
            conn = await connect(HOST, server.port, secret=SECRET, sender_id="c1")
            assert conn.peer is not None and conn.peer.peer_id == "w9"
            assert conn.peer.authenticated
            await conn.send(Ping(0, 3))
            pong = await conn.recv()
            assert isinstance(pong, Pong) and pong.seq == 3
            (server_side,) = server.connections
            assert server_side.peer is not None and server_side.peer.peer_id == "c1"
            assert not server_side.peer.take_over
            conn.close()
            await conn.wait_closed()
        assert handler.n == 1

    run(main())


def test_a_plain_msgpack_hello_is_closed_and_nothing_is_decoded(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    decoded = count_decodes(monkeypatch)
    caplog.set_level(logging.WARNING, logger="clockwork.transport")

    async def main() -> None:
        handler = Calls()
        async with await serve(HOST, 0, handler, secret=SECRET) as server:
            reader, writer = await asyncio.open_connection(HOST, server.port)
            payload = encode(Hello(0, PROTOCOL_VERSION, Role.CONTROLLER, "intruder"))
            writer.write(struct.pack(">I", len(payload)) + payload)
            await writer.drain()
            assert await read_until_closed(reader) == b""  # closed, nothing said back
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            assert (server.accepted, server.refused, handler.n) == (0, 1, 0)

    run(main())
    assert decoded == []
    assert any("not a clockwork link handshake" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("server_secret", [SECRET, None])
def test_junk_or_a_huge_frame_header_is_closed_after_a_few_bytes(
    server_secret: bytes | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """16 MiB of junk (or a frame header that announces 4 GiB) before the handshake: the
    server closes at once, having read at most a few hundred bytes, decoding nothing."""
    decoded = count_decodes(monkeypatch)

    async def main() -> None:
        async with await serve(HOST, 0, Calls(), secret=server_secret) as server:
            for junk in (b"\xff\xff\xff\xff" + b"\0" * 100, bytes(range(256)) * 65536):
                reader, writer = await asyncio.open_connection(HOST, server.port)
                t0 = time.monotonic()
                writer.write(junk)
                with contextlib.suppress(ConnectionError):
                    await asyncio.wait_for(writer.drain(), 5)
                assert await read_until_closed(reader) == b""
                assert time.monotonic() - t0 < 2
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
            assert server.accepted == 0

    run(main())
    assert decoded == []


def test_the_handshake_reads_only_its_fixed_size_messages() -> None:
    """Count the bytes taken off the socket: junk is refused after the 4 magic bytes."""

    async def main() -> None:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        theirs.setblocking(False)
        written = 0
        chunk = b"\x00\x00\x10\x00" + b"j" * 65532
        try:
            while written < 16 << 20:
                written += theirs.send(chunk)
        except BlockingIOError:
            pass  # the socket buffers are full
        with pytest.raises(HandshakeError, match="not a clockwork link handshake"):
            await ServerHandshake(SECRET, "w").accept(ours, "peer")
        left = 0
        try:
            while data := ours.recv(1 << 20):
                left += len(data)
        except BlockingIOError:
            pass
        consumed = written - left
        assert 0 < consumed <= MAX_HANDSHAKE_READ_BYTES
        assert consumed == 4
        ours.close()
        theirs.close()

    run(main())


def test_a_silent_peer_is_closed_after_the_handshake_timeout() -> None:
    async def main() -> None:
        async with await serve(HOST, 0, Calls(), secret=SECRET, handshake_timeout_s=0.2) as server:
            reader, writer = await asyncio.open_connection(HOST, server.port)
            t0 = time.monotonic()
            assert await read_until_closed(reader) == b""
            assert 0.15 < time.monotonic() - t0 < 2
            writer.close()
            await writer.wait_closed()
            assert server.refused == 1

    run(main())


def test_a_controller_with_the_wrong_secret_is_refused_by_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client that ignores the server's proof and sends one made with another secret."""
    caplog.set_level(logging.WARNING, logger="clockwork.transport")

    async def main() -> None:
        handler = Calls()
        async with await serve(HOST, 0, handler, secret=SECRET) as server:
            reader, writer = await asyncio.open_connection(HOST, server.port)
            hello = new_hello(LinkRole.CONTROLLER, "forger", OTHER, take_over=True).pack()
            writer.write(hello)
            server_hello = await reader.readexactly(HELLO_BYTES)
            await reader.readexactly(MAC_BYTES)
            writer.write(mac(OTHER, b"clockwork link v1: client proof", hello, server_hello))
            assert await read_until_closed(reader) == b""  # no verdict: closed
            writer.close()
            await writer.wait_closed()
            assert (server.accepted, server.refused, handler.n) == (0, 1, 0)

    run(main())
    assert any(
        "'forger' did not prove the cluster secret" in r.getMessage() for r in caplog.records
    )


def test_a_worker_with_the_wrong_secret_is_refused_by_the_controller() -> None:
    async def main() -> None:
        handler = Calls()
        async with await serve(HOST, 0, handler, secret=OTHER, server_id="fake") as server:
            with pytest.raises(
                HandshakeError, match=r"\('fake'\) did not prove the cluster secret"
            ):
                await connect(HOST, server.port, secret=SECRET, sender_id="c1")
            assert handler.n == 0

    run(main())


def test_a_fake_worker_that_sends_frames_is_refused_before_they_are_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoded = count_decodes(monkeypatch)

    async def main() -> None:
        async def fake_worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            payload = encode(Hello(0, PROTOCOL_VERSION, Role.WORKER, "w0"))
            writer.write((struct.pack(">I", len(payload)) + payload) * 100)
            await writer.drain()
            await reader.read()
            writer.close()

        server = await asyncio.start_server(fake_worker, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(HandshakeError, match="not a clockwork link handshake"):
            await connect(HOST, port, secret=SECRET)
        server.close()
        await server.wait_closed()

    run(main())
    assert decoded == []


@pytest.mark.parametrize(
    ("server_secret", "client_secret", "message"),
    [
        (SECRET, None, "requires the cluster secret and this end has none"),
        (None, SECRET, "runs without a cluster secret"),
    ],
)
def test_secret_and_no_secret_refuse_each_other(
    server_secret: bytes | None, client_secret: bytes | None, message: str
) -> None:
    async def main() -> None:
        handler = Calls()
        async with await serve(HOST, 0, handler, secret=server_secret) as server:
            with pytest.raises(HandshakeError, match=message):
                await connect(HOST, server.port, secret=client_secret)
            assert handler.n == 0

    run(main())


def test_insecure_mode_links_without_a_secret() -> None:
    async def main() -> None:
        async with await serve(HOST, 0, Calls(), server_id="w") as server:
            conn = await connect(HOST, server.port)
            assert conn.peer is not None and not conn.peer.authenticated
            await conn.send(Ping(0, 1))
            assert isinstance(await conn.recv(), Pong)
            conn.close()
            await conn.wait_closed()

    run(main())


def test_admit_refuses_with_a_reason_the_client_sees() -> None:
    async def main() -> None:
        handler = Calls()

        def admit(conn: StreamConnection) -> str | None:
            assert conn.peer is not None
            return None if conn.peer.take_over else f"busy, {conn.peer.peer_id} may not"

        async with await serve(HOST, 0, handler, secret=SECRET, admit=admit) as server:
            with pytest.raises(LinkRefusedError, match="refused us: busy, c2 may not"):
                await connect(HOST, server.port, secret=SECRET, sender_id="c2")
            conn = await connect(HOST, server.port, secret=SECRET, sender_id="c3", take_over=True)
            await conn.send(Ping(0, 1))
            assert isinstance(await conn.recv(), Pong)
            conn.close()
            await conn.wait_closed()
            assert (server.accepted, server.refused, handler.n) == (1, 1, 1)

    run(main())


def test_connections_beyond_the_pending_handshakes_cap_are_closed_unread() -> None:
    async def main() -> None:
        handler = Calls()
        async with await serve(
            HOST, 0, handler, secret=SECRET, handshake_timeout_s=5, max_pending_handshakes=4
        ) as server:
            silent = [await asyncio.open_connection(HOST, server.port) for _ in range(4)]
            await asyncio.sleep(0.1)  # all four accepted, each in its handshake
            reader, writer = await asyncio.open_connection(HOST, server.port)
            t0 = time.monotonic()
            assert await read_until_closed(reader) == b""
            assert time.monotonic() - t0 < 1  # not the handshake timeout: closed at once
            assert server.refused_busy == 1
            writer.close()
            for _, w in silent:
                w.close()
            # the silent ones gone, a controller with the secret gets in
            deadline = time.monotonic() + 5
            while server._pending_handshakes and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            conn = await connect(HOST, server.port, secret=SECRET, sender_id="c1")
            await conn.send(Ping(0, 1))
            assert isinstance(await conn.recv(), Pong)
            conn.close()
            await conn.wait_closed()
        assert handler.n == 1

    run(main())
