"""Decoding limits: a frame costs memory in proportion to its content, whatever it holds.

A msgpack byte can become a 30-60 byte Python object (an empty array, an empty map), so frames
built of them are refused in bounded time and memory, while every valid message, large ones
included, still decodes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest

from clockwork.core.actions import Infer
from clockwork.core.ids import DeviceId
from clockwork.transport import (
    InferInputs,
    InferMsg,
    Ping,
    ProtocolError,
    StreamConnection,
    decode,
    encode,
    serve,
)
from clockwork.transport.codec import COUNT_ABOVE_BYTES, MAX_ARRAY_LEN, MAX_ELEMENTS

from support.raw_link import open_raw_link

MIB = 1 << 20
D = DeviceId("w0", 0)


def array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + struct.pack(">H", n)
    return b"\xdd" + struct.pack(">I", n)


def map_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x80 | n])
    if n < 1 << 16:
        return b"\xde" + struct.pack(">H", n)
    return b"\xdf" + struct.pack(">I", n)


def empty_arrays(total_bytes: int) -> bytes:
    """An Infer-tagged message of arrays of ``MAX_ARRAY_LEN`` empty arrays, ``total_bytes``
    long: each byte an empty list when decoded."""
    inner = array_header(MAX_ARRAY_LEN) + b"\x90" * MAX_ARRAY_LEN
    n = total_bytes // len(inner)
    return b"\x93\x0b\x00" + array_header(n) + inner * n


def empty_maps(total_bytes: int) -> bytes:
    """The same with maps of empty maps (``{"": {}}``, two bytes per dict)."""
    inner = map_header(MAX_ARRAY_LEN) + b"\xa0\x80" * MAX_ARRAY_LEN
    n = total_bytes // len(inner)
    return b"\x93\x0b\x00" + array_header(n) + inner * n


def deeply_nested(depth: int) -> bytes:
    return b"\x93\x0b\x00" + b"\x91" * depth + b"\x90"


def huge_headers() -> bytes:
    """Arrays that announce 4 G elements each, nested (a list is allocated at its header)."""
    return b"\x93\x0b\x00" + array_header(2**32 - 1) * 100 + b"\0" * (2 * MIB)


HOSTILE: list[tuple[str, Callable[[], bytes]]] = [
    ("empty-arrays-16MiB", lambda: empty_arrays(16 * MIB)),
    ("empty-maps-16MiB", lambda: empty_maps(16 * MIB)),
    ("nested-100k-deep", lambda: deeply_nested(100_000)),
    ("huge-array-headers", huge_headers),
    ("long-string", lambda: b"\x93\x0b\x00\xdb" + struct.pack(">I", 4 * MIB) + b"x" * 4 * MIB),
    ("extension-type", lambda: b"\x93\x0b\x00" + b"\xc7\xff\x01" + b"\0" * 255 + b"\0" * MIB),
]


@pytest.mark.parametrize("make", [h[1] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_frames_are_refused_in_bounded_time_and_memory(make: Callable[[], bytes]) -> None:
    data = make()
    t0 = time.perf_counter()
    with pytest.raises(ProtocolError):
        decode(data)
    elapsed_s = time.perf_counter() - t0
    # before the limits, 16 MiB of empty arrays took seconds and GBs
    assert elapsed_s < 2.0
    tracemalloc.start()  # (slows allocation tenfold: not timed)
    try:
        with pytest.raises(ProtocolError):
            decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * MIB, f"{peak / MIB:.0f} MiB traced while decoding"


def test_the_element_budget_is_what_stops_a_frame_of_empty_arrays() -> None:
    with pytest.raises(ProtocolError, match=f"over {MAX_ELEMENTS} arrays, maps and elements"):
        decode(empty_arrays(4 * MIB))


def test_short_frames_are_not_counted_but_cannot_amplify_much() -> None:
    data = empty_arrays(COUNT_ABOVE_BYTES - 64)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):  # decodes, but is no Infer
            decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * MIB


def infer_with_inputs(batch: int, shape: tuple[int, ...]) -> InferMsg:
    x = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    return InferMsg(
        5,
        Infer(1, D, "m", batch, tuple(range(batch)), 1, 2, 3),
        tuple(InferInputs.from_arrays({"x": x + i}) for i in range(batch)),
    )


@pytest.mark.parametrize(
    "msg",
    [
        infer_with_inputs(64, (1, 3, 32, 32)),  # 786 KB: counted
        infer_with_inputs(2, (1, 3, 224, 224)),  # 1.2 MB: counted
        infer_with_inputs(512, (4,)),  # many small tensors, counted
        InferMsg(5, Infer(1, D, "m", 4000, tuple(range(4000)), 1, 2, 3), ()),
    ],
    ids=["b64-32x32", "b2-224x224", "b512-small", "b4000-no-inputs"],
)
def test_valid_messages_large_ones_included_still_decode(msg: InferMsg) -> None:
    assert decode(encode(msg)) == msg


def test_a_hostile_frame_after_the_handshake_closes_only_that_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="clockwork.transport")
    secret = b"k" * 32
    ended: list[str | None] = []

    async def handler(conn: StreamConnection) -> None:
        async for _ in conn:
            pass
        ended.append(conn.close_reason)

    async def main() -> None:
        async with await serve("127.0.0.1", 0, handler, secret=secret) as server:
            reader, writer = await open_raw_link("127.0.0.1", server.port, secret=secret)
            frame = empty_arrays(16 * MIB)
            t0 = time.monotonic()
            writer.write(struct.pack(">I", len(frame)) + frame)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            with contextlib.suppress(ConnectionError):
                assert await asyncio.wait_for(reader.read(), 10) == b""
            assert time.monotonic() - t0 < 5
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            while not ended:
                await asyncio.sleep(0.01)
            # and the server still serves others
            reader2, writer2 = await open_raw_link("127.0.0.1", server.port, secret=secret)
            ping = encode(Ping(0, 1))
            writer2.write(struct.pack(">I", len(ping)) + ping)
            await writer2.drain()
            writer2.close()
            await writer2.wait_closed()
            del reader2
            assert server.accepted == 2

    with asyncio.Runner() as runner:
        runner.run(asyncio.wait_for(main(), 30))
    assert ended[0] is not None
    assert "undecodable frame" in ended[0] and "refused" in ended[0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([w for w in warnings if "undecodable frame" in w]) == 1
