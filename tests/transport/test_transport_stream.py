"""The TCP transport on real loopback sockets (127.0.0.1, port 0)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import struct
import time
from collections.abc import Coroutine
from typing import Any

import numpy as np
import pytest

from clockwork.core.actions import (
    ActionResult,
    ActionStatus,
    EvictWeights,
    Infer,
    LoadWeights,
)
from clockwork.core.clock_sync import ClockSync
from clockwork.core.events import DeviceInfo, ModelInfo
from clockwork.core.ids import DeviceId
from clockwork.core.profile import V100_32GB, shipped_profile
from clockwork.transport import (
    PROTOCOL_VERSION,
    ActionResultMsg,
    ConnectionClosedError,
    EvictWeightsMsg,
    GetWorkerState,
    Hello,
    InferInputs,
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
    connect,
    decode,
    encode,
    install_uvloop,
    loop_factory,
    pong_for,
    serve,
)

from support.raw_link import open_raw_link

D = DeviceId("w0", 1)
HOST = "127.0.0.1"


def run(coro: Coroutine[Any, Any, None], use_uvloop: bool = False) -> None:
    with asyncio.Runner(loop_factory=loop_factory(use_uvloop)) as runner:
        runner.run(asyncio.wait_for(coro, 10))


def all_messages() -> list[Message]:
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    profile = shipped_profile("resnet50_v2-V100-32GB")
    return [
        Hello(0, PROTOCOL_VERSION, Role.CONTROLLER, "ctl-1"),
        GetWorkerState(0),
        WorkerState(
            0,
            "w0",
            (DeviceInfo(D, V100_32GB, ("resnet50_v2",)),),
            (ModelInfo("resnet50_v2", (profile,), 100_000_000),),
        ),
        Ping(0, 1, -5),
        Pong(0, 1, 12345, None),
        LoadWeightsMsg(0, LoadWeights(1, D, "resnet50_v2", 10, 20, 8_300_000)),
        InferMsg(
            0,
            Infer(2, D, "resnet50_v2", 2, (7, 8), 10, 20, 4_050_000),
            (InferInputs.from_arrays({"x": x}), InferInputs.from_arrays({"x": -x})),
        ),
        EvictWeightsMsg(0, EvictWeights(3, D, "resnet50_v2")),
        ActionResultMsg(
            0,
            ActionResult(2, D, "resnet50_v2", ActionStatus.SUCCESS, 1, 2, 3, 1),
            (InferOutputs.from_arrays({"y": x[0, 0]}),) * 2,
        ),
    ]


class Echo:
    """A server handler that echoes every message and records how each connection ended."""

    def __init__(self) -> None:
        self.reasons: list[str | None] = []
        self.ended = asyncio.Event()

    async def __call__(self, conn: StreamConnection) -> None:
        async for msg in conn:
            if isinstance(msg, Ping):
                await conn.send(pong_for(msg, conn.clock_sync))
            else:
                await conn.send(msg)
        self.reasons.append(conn.close_reason)
        self.ended.set()

    async def next_end(self) -> str | None:
        await self.ended.wait()
        self.ended.clear()
        return self.reasons[-1]


def stamped(msg: Message, sent_ns: int) -> Message:
    return dataclasses.replace(msg, sent_ns=sent_ns)


async def check_echo(server: Server) -> None:
    async with await connect(HOST, server.port) as conn:
        for msg in all_messages():
            if isinstance(msg, Ping):
                continue
            await conn.send(msg)
            back = await conn.recv()
            assert back == stamped(msg, back.sent_ns)


@pytest.mark.parametrize("use_uvloop", [False, True])
def test_every_message_type_round_trips(use_uvloop: bool) -> None:
    async def main() -> None:
        async with await serve(HOST, 0, Echo()) as server:
            await check_echo(server)

    run(main(), use_uvloop)


def test_pipelined_sends_from_many_tasks_arrive_whole() -> None:
    async def main() -> None:
        async with await serve(HOST, 0, Echo()) as server:
            conn = await connect(HOST, server.port)
            big = np.ones(150_000, dtype=np.float32)  # 600 KB: frames larger than a write

            async def sender(k: int) -> None:
                for i in range(10):
                    inputs = (InferInputs.from_arrays({"x": big * k}),) if i % 3 == 0 else ()
                    await conn.send(
                        InferMsg(0, Infer(k * 100 + i, D, "m", 1, (1,), 0, 1, 1), inputs)
                    )

            async def receiver() -> set[int]:
                ids = set()
                for _ in range(80):
                    msg = await conn.recv()
                    assert isinstance(msg, InferMsg)
                    ids.add(msg.action.action_id)
                    if msg.inputs:
                        k = msg.action.action_id // 100
                        assert float(msg.input_arrays()[0]["x"][-1]) == k
                return ids

            reading = asyncio.create_task(receiver())
            await asyncio.gather(*(sender(k) for k in range(8)))
            ids = await reading
            assert ids == {k * 100 + i for k in range(8) for i in range(10)}
            conn.close("done")
            await conn.wait_closed()

    run(main())


async def raw_client(port: int, data: bytes, eof: bool = True) -> bytes:
    """Send ``data`` on a plain socket (after the link handshake) and return whatever comes back
    before the server closes."""
    reader, writer = await open_raw_link(HOST, port)
    writer.write(data)
    await writer.drain()
    if eof:
        writer.write_eof()
    got = await reader.read()  # until the server closes its side
    writer.close()
    await writer.wait_closed()
    return got


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


BAD_STREAMS: list[tuple[str, bytes, bool, str]] = [
    ("garbage", frame(b"\xc1\xc1\xc1\xc1"), False, "undecodable frame of 4 bytes"),
    ("unknown-tag", frame(b"\x92\x63\x00"), False, "unknown message tag 99"),
    ("empty-frame", frame(b""), False, "undecodable frame of 0 bytes"),
    (
        "truncated",
        struct.pack(">I", 100) + b"\x92" * 10,
        True,
        "truncated frame: stream ended after 10 of 100 payload bytes",
    ),
    ("truncated-header", b"\x00\x00", True, "truncated frame header"),
    (
        "oversized",
        struct.pack(">I", 2**31) + b"x" * 100,
        False,
        "frame length 2147483648 bytes exceeds the limit of 1048576",
    ),
    ("bad-field", frame(encode(Ping(0, 1))[:-1] + b"\xa1x"), False, "Ping.min_delta_ns"),
]


@pytest.mark.parametrize(
    ("data", "eof", "reason"), [b[1:] for b in BAD_STREAMS], ids=[b[0] for b in BAD_STREAMS]
)
def test_bad_input_closes_only_that_connection(
    data: bytes, eof: bool, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="clockwork.transport")
    echo = Echo()

    async def main() -> None:
        async with await serve(HOST, 0, echo, max_frame_bytes=1 << 20) as server:
            # a good connection stays open across the bad one
            good = await connect(HOST, server.port)
            await good.send(Ping(0, 1))
            assert isinstance(await good.recv(), Pong)
            # a valid message before the bad bytes is still answered
            back = await raw_client(server.port, frame(encode(GetWorkerState(0))) + data, eof)
            assert isinstance(decode(back[4:]), GetWorkerState)
            got_reason = await echo.next_end()
            assert got_reason is not None
            assert reason in got_reason
            await good.send(Ping(0, 2))
            pong = await good.recv()
            assert isinstance(pong, Pong)
            assert pong.seq == 2
            # and new connections are still served
            await check_echo(server)
            good.close("done")
            await good.wait_closed()
            assert server.accepted == 3

    run(main())
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "clockwork.transport" and r.levelno >= logging.WARNING
    ]
    if reason.startswith("truncated"):
        assert any(reason in w for w in warnings)
    else:
        assert len(warnings) == 1
        assert reason in warnings[0]


def test_failing_handler_is_logged_and_the_server_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    async def handler(conn: StreamConnection) -> None:
        nonlocal calls
        calls += 1
        msg = await conn.recv()
        if isinstance(msg, Hello) and msg.sender_id == "crash":
            raise RuntimeError("boom")
        await conn.send(msg)

    async def main() -> None:
        async with await serve(HOST, 0, handler) as server:
            bad = await connect(HOST, server.port)
            await bad.send(Hello(0, 1, Role.CONTROLLER, "crash"))
            with pytest.raises(ConnectionClosedError, match="peer closed the connection"):
                await bad.recv()
            good = await connect(HOST, server.port)
            await good.send(Hello(0, 1, Role.CONTROLLER, "ok"))
            back = await good.recv()
            assert isinstance(back, Hello)
            assert back.sender_id == "ok"
            for c in (bad, good):
                c.close("done")
                await c.wait_closed()

    run(main())
    assert calls == 2
    assert "handler for connection" in caplog.text
    assert "boom" in caplog.text


def test_client_sees_the_server_close_and_iteration_ends() -> None:
    async def handler(conn: StreamConnection) -> None:
        await conn.send(Ping(0, 1))
        await conn.send(Ping(0, 2))
        conn.close("bye")

    async def main() -> None:
        async with await serve(HOST, 0, handler) as server:
            conn = await connect(HOST, server.port)
            got = [m async for m in conn]
            assert [m.seq for m in got if isinstance(m, Ping)] == [1, 2]
            assert conn.close_reason == "peer closed the connection"
            with pytest.raises(ConnectionClosedError):
                await conn.send(Ping(0, 3))
            await conn.wait_closed()

    run(main())


def test_oversized_send_is_refused_and_the_connection_stays_open() -> None:
    async def main() -> None:
        async with await serve(HOST, 0, Echo()) as server:
            conn = await connect(HOST, server.port, max_frame_bytes=1000)
            with pytest.raises(ProtocolError, match="exceeds the frame limit of 1000"):
                await conn.send(Hello(0, 1, Role.WORKER, "w" * 2000))
            await conn.send(Ping(0, 5))
            assert isinstance(await conn.recv(), Pong)
            conn.close("done")
            await conn.wait_closed()

    run(main())


def test_server_close_ends_open_connections() -> None:
    async def main() -> None:
        echo = Echo()
        server = await serve(HOST, 0, echo)
        conn = await connect(HOST, server.port)
        await conn.send(Ping(0, 1))
        await conn.recv()
        server.close()
        await server.wait_closed()
        with pytest.raises(ConnectionClosedError):
            await conn.recv()
        await conn.wait_closed()

    run(main())


def test_clock_sync_through_connections() -> None:
    skew = 3_000_000_000

    def worker_clock() -> int:
        return time.monotonic_ns() + skew

    async def main() -> None:
        async with await serve(
            HOST, 0, Echo(), clock_ns=worker_clock, clock_sync_factory=ClockSync
        ) as server:
            sync = ClockSync()
            conn = await connect(HOST, server.port, clock_sync=sync)
            for seq in range(20):
                await conn.send(Ping(0, seq, sync.local_min_delta_ns))
                pong = await conn.recv()
                assert isinstance(pong, Pong)
            assert sync.ready
            # loopback on a busy 2-core machine: the bound is the measured rtt, a few ms at most
            assert abs(sync.offset_ns - skew) <= sync.error_bound_ns
            assert sync.error_bound_ns < 50_000_000
            conn.close("done")
            await conn.wait_closed()

    run(main())


def test_install_uvloop_sets_the_policy() -> None:
    before = asyncio.get_event_loop_policy()
    try:
        assert install_uvloop()
        import uvloop

        assert isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy)
    finally:
        asyncio.set_event_loop_policy(before)


def test_nothing_installs_uvloop_at_import() -> None:
    import importlib

    import clockwork.transport as t

    importlib.reload(t)
    assert "uvloop" not in type(asyncio.get_event_loop_policy()).__module__


def test_a_peer_that_never_reads_cannot_hang_shutdown() -> None:
    big = InferMsg(
        0,
        Infer(1, D, "m", 1, (1,), 0, 1, 1),
        (InferInputs.from_arrays({"x": np.zeros(1 << 20, dtype=np.uint8)}),),
    )
    blocked = asyncio.Event()

    async def flood(conn: StreamConnection) -> None:
        conn.close_timeout_s = 0.2
        while True:
            try:
                await asyncio.wait_for(conn.send(big), 0.3)
            except TimeoutError:
                blocked.set()
                conn.close("giving up on a peer that does not read")
                t0 = time.monotonic()
                await conn.wait_closed()
                assert time.monotonic() - t0 < 2
                assert conn.closed
                return

    async def main() -> None:
        async with await serve(HOST, 0, flood) as server:
            reader, writer = await open_raw_link(HOST, server.port)  # never reads
            await asyncio.wait_for(blocked.wait(), 5)
            # and a server closing under a non-reading peer does not hang either
            t0 = time.monotonic()
            server.close()
            await server.wait_closed()
            assert time.monotonic() - t0 < 2
            writer.transport.abort()
            await writer.wait_closed()
            del reader

    run(main())


# ---- batched writes and buffered reads ----------------------------------------------------------


@pytest.mark.parametrize("use_uvloop", [False, True])
def test_frames_written_together_are_received_one_by_one_without_waiting(use_uvloop: bool) -> None:
    msgs = [Ping(0, i) for i in range(50)]

    async def main() -> None:
        got: asyncio.Queue[Message] = asyncio.Queue()

        async def collect(conn: StreamConnection) -> None:
            first = await conn.recv()
            await got.put(first)
            # the rest came in the same write: each is there already, no recv has to wait
            for _ in msgs[1:]:
                assert conn.has_buffered_frame()
                await got.put(await conn.recv())
            assert not conn.has_buffered_frame()

        async with await serve(HOST, 0, collect) as server:
            conn = await connect(HOST, server.port)
            failed = await conn.send_many(msgs)
            assert failed == []
            for sent in msgs:
                back = await got.get()
                assert back == stamped(sent, back.sent_ns)
            conn.close("done")
            await conn.wait_closed()

    run(main(), use_uvloop)


def test_send_many_leaves_out_only_what_it_cannot_send() -> None:
    too_big = InferMsg(
        0,
        Infer(9, D, "m", 1, (1,), 0, 1, 1),
        (InferInputs.from_arrays({"x": np.zeros(1 << 20, dtype=np.uint8)}),),
    )
    bad = Ping(0, 2**70)

    async def main() -> None:
        async with await serve(HOST, 0, Echo(), max_frame_bytes=1 << 20) as server:
            conn = await connect(HOST, server.port, max_frame_bytes=1 << 20)
            failed = await conn.send_many([GetWorkerState(0), too_big, bad, Ping(0, 3)])
            assert [m for m, _ in failed] == [too_big, bad]
            assert "exceeds the frame limit" in str(failed[0][1])
            assert "cannot encode" in str(failed[1][1])
            assert isinstance(await conn.recv(), GetWorkerState)
            pong = await conn.recv()
            assert isinstance(pong, Pong)
            assert pong.seq == 3
            # ...and the connection stays open
            assert conn.send_nowait([Ping(0, 4)]) == []
            pong = await conn.recv()
            assert isinstance(pong, Pong)
            assert pong.seq == 4
            conn.close("done")
            await conn.wait_closed()
            with pytest.raises(ConnectionClosedError):
                conn.send_nowait([Ping(0, 5)])

    run(main())


def test_send_nowait_declines_while_another_send_waits() -> None:
    async def main() -> None:
        async with await serve(HOST, 0, Echo()) as server:
            conn = await connect(HOST, server.port)
            async with conn._send_lock:  # as a send in progress holds it
                assert conn.send_nowait([Ping(0, 1)]) is None
            assert conn.send_nowait([Ping(0, 2)]) == []
            pong = await conn.recv()
            assert isinstance(pong, Pong)
            assert pong.seq == 2  # the declined one was not sent
            conn.close("done")
            await conn.wait_closed()

    run(main())


def test_a_recv_cancelled_mid_frame_loses_nothing() -> None:
    async def main() -> None:
        server_side: asyncio.Queue[StreamConnection] = asyncio.Queue()
        done = asyncio.Event()

        async def hold(conn: StreamConnection) -> None:
            await server_side.put(conn)
            await done.wait()

        async with await serve(HOST, 0, hold) as server:
            reader, writer = await open_raw_link(HOST, server.port)
            conn = await server_side.get()
            data = frame(encode(Ping(0, 1))) + frame(encode(Ping(0, 2)))
            writer.write(data[:7])  # the first frame, cut short
            await writer.drain()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(conn.recv(), 0.1)
            assert not conn.closed
            writer.write(data[7:])
            await writer.drain()
            first, second = await conn.recv(), await conn.recv()
            assert isinstance(first, Ping)
            assert isinstance(second, Ping)
            assert (first.seq, second.seq) == (1, 2)
            done.set()
            writer.close()
            await writer.wait_closed()
            del reader

    run(main())
