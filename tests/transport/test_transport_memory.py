"""The in-memory transport: same interface and failure behaviour as the TCP one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import numpy as np
import pytest

from clockwork.core.actions import ActionResult, ActionStatus, EvictWeights, Infer
from clockwork.core.clock_sync import ClockSync
from clockwork.core.ids import DeviceId
from clockwork.transport import (
    ActionResultMsg,
    Connection,
    ConnectionClosedError,
    EvictWeightsMsg,
    Hello,
    InferInputs,
    InferMsg,
    InferOutputs,
    MemoryConnection,
    Ping,
    Pong,
    ProtocolError,
    Role,
    encode,
    memory_pair,
    pong_for,
)

D = DeviceId("w0", 0)


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 5))


def conforms(conn: Connection) -> Connection:
    return conn


@pytest.mark.parametrize("use_codec", [True, False])
def test_messages_flow_both_ways(use_codec: bool) -> None:
    async def main() -> None:
        a, b = memory_pair(use_codec=use_codec)
        conforms(a)
        x = np.arange(12, dtype=np.float32).reshape(3, 4)
        infer = InferMsg(
            0, Infer(1, D, "m", 1, (5,), 0, 10, 3), (InferInputs.from_arrays({"x": x}),)
        )
        await a.send(infer)
        got = await b.recv()
        assert isinstance(got, InferMsg)
        assert got.action == infer.action
        np.testing.assert_array_equal(got.input_arrays()[0]["x"], x)
        assert got.sent_ns > 0  # stamped by the sender's clock
        res = ActionResultMsg(
            0,
            ActionResult(1, D, "m", ActionStatus.SUCCESS, 1, 2, 3),
            (InferOutputs.from_arrays({"y": x * 2}),),
        )
        await b.send(res)
        back = await a.recv()
        assert isinstance(back, ActionResultMsg)
        assert back.result == res.result
        np.testing.assert_array_equal(back.output_arrays()[0]["y"], x * 2)
        a.close("done")
        await a.wait_closed()

    run(main())


def test_codec_catches_unencodable_messages() -> None:
    async def main() -> None:
        a, b = memory_pair()
        with pytest.raises(ProtocolError):
            await a.send(Ping(0, 2**70))
        assert not a.closed  # the sender's mistake: nothing was sent, the connection stays
        await a.send(Ping(0, 1))
        assert isinstance(await b.recv(), Ping)
        # without the codec the same bad message passes unnoticed
        c, d = memory_pair(use_codec=False)
        await c.send(Ping(0, 2**70))
        got = await d.recv()
        assert isinstance(got, Ping)
        assert got.seq == 2**70

    run(main())


def test_close_lets_the_peer_drain_then_ends_iteration(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="clockwork.transport")

    async def main() -> None:
        a, b = memory_pair(("ctl", "wrk"))
        for i in range(3):
            await a.send(EvictWeightsMsg(0, EvictWeights(i, D, "m")))
        a.close("shutting down")
        got = [m async for m in b]
        assert [m.action.action_id for m in got if isinstance(m, EvictWeightsMsg)] == [0, 1, 2]
        assert b.closed
        assert b.close_reason == "peer closed the connection"
        assert a.close_reason == "shutting down"
        with pytest.raises(ConnectionClosedError, match="shutting down"):
            await a.send(Ping(0, 1))
        with pytest.raises(ConnectionClosedError):
            await b.send(Ping(0, 1))
        with pytest.raises(ConnectionClosedError):
            await b.recv()

    run(main())
    assert "connection ctl closed: shutting down" in caplog.text


def test_close_wakes_a_pending_recv() -> None:
    async def main() -> None:
        a, _b = memory_pair()
        task = asyncio.create_task(a.recv())
        await asyncio.sleep(0)
        a.close("bye")
        with pytest.raises(ConnectionClosedError, match="bye"):
            await task

    run(main())


def test_sending_to_a_closed_peer_closes_this_end() -> None:
    async def main() -> None:
        a, b = memory_pair()
        b.close("gone")
        with pytest.raises(ConnectionClosedError):
            await a.send(Ping(0, 1))
        assert a.closed

    run(main())


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"\xc1garbage", "undecodable frame"),
        (encode(Ping(0, 1))[:-1], "undecodable frame"),
        (b"\x93\x63\x00\x00", "unknown message tag 99"),
        (b"x" * 2000, "exceeds the limit of 1000"),
    ],
)
def test_garbage_closes_the_receiving_end(
    frame: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        a, b = memory_pair(("a", "b"), max_frame_bytes=1000)
        await a.send(Ping(0, 1))
        await a.send_raw(frame)
        assert isinstance(await b.recv(), Ping)
        with pytest.raises(ConnectionClosedError, match=reason):
            await b.recv()
        assert b.closed
        assert reason in (b.close_reason or "")

    run(main())
    warnings = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "clockwork.transport"
    ]
    assert len(warnings) == 1
    assert "connection b closed" in warnings[0].getMessage()
    assert reason in warnings[0].getMessage()


def test_oversized_send_is_refused_locally() -> None:
    async def main() -> None:
        a, _b = memory_pair(max_frame_bytes=100)
        big = Hello(0, 1, Role.WORKER, "w" * 200)
        with pytest.raises(ProtocolError, match="exceeds the frame limit of 100"):
            await a.send(big)
        assert not a.closed

    run(main())


def test_clock_sync_over_ping_pong_with_skewed_clocks() -> None:
    skew = -7_000_000_000  # the worker's clock is 7 s behind the controller's

    class Clock:
        def __init__(self, offset: int) -> None:
            self.t = 1_000_000_000_000
            self.offset = offset

        def __call__(self) -> int:
            self.t += 1000  # every reading moves time on by 1 us
            return self.t + self.offset

    base = Clock(0)

    def ctl_clock() -> int:
        return base()

    def wrk_clock() -> int:
        return base() + skew

    async def main() -> None:
        ctl_sync, wrk_sync = ClockSync(), ClockSync()
        ctl, wrk = memory_pair(
            ("ctl", "wrk"), clock_ns=(ctl_clock, wrk_clock), clock_sync=(ctl_sync, wrk_sync)
        )
        for seq in range(5):
            await ctl.send(Ping(0, seq, ctl_sync.local_min_delta_ns))
            ping = await wrk.recv()
            assert isinstance(ping, Ping)
            await wrk.send(pong_for(ping, wrk_sync))
            pong = await ctl.recv()
            assert isinstance(pong, Pong)
            assert pong.seq == seq
            assert pong.ping_sent_ns == ping.sent_ns
        assert ctl_sync.ready
        assert abs(ctl_sync.offset_ns - skew) <= ctl_sync.error_bound_ns
        assert ctl_sync.error_bound_ns < 10_000
        assert wrk_sync.ready
        assert abs(wrk_sync.offset_ns + skew) <= wrk_sync.error_bound_ns

    run(main())


def test_memory_connection_is_a_connection() -> None:
    a = MemoryConnection("x")
    assert conforms(a).name == "x"
    assert not a.closed
