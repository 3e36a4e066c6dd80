"""Inputs in shared segments: found where they lie, sent as a name and offset to a worker on
this host (bytes to any other), mapped by the worker, and removed with their last view."""

from __future__ import annotations

import gc
import os
import threading
from concurrent.futures import thread as cf_thread

import numpy as np
import pytest

from clockwork.core.actions import Infer
from clockwork.core.ids import DeviceId
from clockwork.transport import InferInputs, InferMsg, ProtocolError, shared_segments
from clockwork.transport.codec import decode, encode_parts
from clockwork.transport.shared_segments import (
    Segment,
    live_segments,
    locate,
    map_readonly,
    removals_done,
)


def exists(name: str) -> bool:
    return os.path.exists(f"/dev/shm/{name}")


def infer_msg(*arrays: np.ndarray) -> InferMsg:
    action = Infer(7, DeviceId("w0", 0), "m", len(arrays), tuple(range(len(arrays))), 0, 10, 5)
    return InferMsg(0, action, tuple(InferInputs.from_arrays({"x": a}) for a in arrays))


def payload(msg: InferMsg, share: bool) -> bytes:
    return b"".join(bytes(p) for p in encode_parts(msg, share=share))


def test_a_segment_lives_until_its_holder_and_its_last_view_are_done() -> None:
    before = live_segments()
    seg = Segment.create(1 << 20)
    rows = np.frombuffer(seg.view, np.float32).reshape(4, -1)
    rows[:] = np.arange(4, dtype=np.float32)[:, None]
    assert live_segments() == before + 1 and exists(seg.name)
    assert locate(rows[2]) == (seg.name, 2 * rows.shape[1] * 4)
    assert locate(rows[:, 1]) is None  # not contiguous: sent as bytes
    assert locate(np.zeros(8, np.float32)) is None  # elsewhere
    seg.release()
    # a view still reads it (the controller holds a request's inputs until it is answered)
    assert exists(seg.name) and float(rows[3, 0]) == 3.0
    del rows
    gc.collect()
    removals_done()
    assert not exists(seg.name) and live_segments() == before


def test_a_local_worker_gets_a_name_and_offset_others_get_the_bytes() -> None:
    seg = Segment.create(2 * 300_000 * 4)
    batch = np.frombuffer(seg.view, np.float32).reshape(2, -1)
    batch[0], batch[1] = 1.5, -2.0
    msg = infer_msg(batch[0], batch[1])
    shared = payload(msg, share=True)
    plain = payload(msg, share=False)
    assert len(shared) < 1000 < 2 * batch[0].nbytes < len(plain)
    got = decode(shared)
    assert isinstance(got, InferMsg) and got.shares_memory
    arrays = got.input_arrays()
    np.testing.assert_array_equal(arrays[1]["x"], batch[1])
    assert not arrays[0]["x"].flags.writeable  # the worker maps it read-only
    remote = decode(plain)
    assert isinstance(remote, InferMsg) and not remote.shares_memory
    np.testing.assert_array_equal(remote.input_arrays()[0]["x"], batch[0])
    # once removed, a late worker cannot map it: that action fails, nothing else
    seg.release()
    del batch, msg
    gc.collect()
    removals_done()
    with pytest.raises(FileNotFoundError):
        got.input_arrays()


def test_shared_references_are_checked() -> None:
    seg = Segment.create(1024)
    arr = np.frombuffer(seg.view, np.uint8)
    msg = infer_msg(arr[:512])
    data = payload(msg, share=True)
    name = seg.name.encode()
    # a name outside the input segments' is refused when the frame is decoded
    with pytest.raises(ProtocolError, match="segment"):
        decode(data.replace(name, b"psm_" + name[4:]))
    # an offset past the segment's end is refused when the worker reads it
    got = decode(data)
    assert isinstance(got, InferMsg)
    tensor = got.inputs[0].tensors["x"]
    bad = InferInputs({"x": type(tensor)(tensor.dtype, tensor.shape, b"", (seg.name, 4096))})
    with pytest.raises(ValueError, match="past the end"):
        bad.to_arrays()
    with pytest.raises(ValueError, match="not the name"):
        map_readonly("../etc/passwd")
    seg.release()
    del arr, msg


def test_without_room_in_shared_memory_inputs_take_the_ordinary_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from clockwork.frontend.api import InferenceCall, Tensor
    from clockwork.frontend.shared_body import body_buffer
    from clockwork.frontend.shared_inputs import share_call
    from clockwork.transport import shared_segments

    before = live_segments()
    monkeypatch.setattr(shared_segments, "ROOM_MARGIN_BYTES", 1 << 62)
    with pytest.raises(OSError, match="would not fit"):
        Segment.create(1024)
    assert isinstance(body_buffer(1 << 20, shared=True), bytearray)
    call = InferenceCall("m", (Tensor("x", "FP32", np.ones(100_000, np.float32)),))
    assert isinstance(share_call(call), InferenceCall)
    assert live_segments() == before


def test_a_large_frame_is_written_in_pieces_the_loop_runs_between() -> None:
    """A 9 MiB batch over TCP: it arrives whole, while a callback due every millisecond keeps
    running (it would wait for the whole write if it were one step)."""
    import asyncio

    from clockwork.transport import StreamConnection, connect, serve
    from clockwork.transport import stream as stream_module

    batch = [np.full(150_528, i, np.float32) for i in range(16)]
    got: list[InferMsg] = []

    async def handler(conn: StreamConnection) -> None:
        msg = await conn.recv()
        assert isinstance(msg, InferMsg)
        got.append(msg)

    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0)
                ticks += 1

        async with await serve("127.0.0.1", 0, handler) as server:
            conn = await connect("127.0.0.1", server.port)
            tick = asyncio.create_task(ticker())
            writes = 0
            real = conn._writer.write

            def counting(data: bytes | bytearray | memoryview) -> None:
                nonlocal writes
                writes += 1
                assert len(data) <= stream_module.WRITE_PIECE_BYTES
                real(data)

            conn._writer.write = counting  # type: ignore[method-assign]
            before = ticks
            await conn.send_many([infer_msg(*batch)])
            during = ticks - before
            async with asyncio.timeout(10):
                while not got:
                    await asyncio.sleep(0.01)
            tick.cancel()
            conn.close()
            await conn.wait_closed()
            assert writes >= 9 * 2**20 // stream_module.WRITE_PIECE_BYTES
            return during

    during = asyncio.run(main())
    assert during >= 5  # other callbacks ran while the frame was written
    arrays = got[0].input_arrays()
    assert [float(a["x"][0]) for a in arrays] == [float(i) for i in range(16)]


def test_a_segment_freed_where_the_locks_are_held_does_not_hang_its_thread() -> None:
    # a mapping's finalizer runs wherever its last view goes: here inside sections that hold
    # the lock every thread pool's submit takes and this module's own lock, as the interpreter
    # may free it mid-way through either (a test run hung so, in a finalizer inside a submit)
    names: list[str] = []

    def free_under_the_locks() -> None:
        segment = Segment.create(4096)
        names.append(segment.name)
        with cf_thread._global_shutdown_lock, shared_segments._lock:
            segment.release()
            del segment

    worker = threading.Thread(target=free_under_the_locks, daemon=True)
    worker.start()
    worker.join(5.0)
    assert not worker.is_alive(), "freeing a segment under the locks hung its thread"
    removals_done()
    assert names and not exists(names[0])
