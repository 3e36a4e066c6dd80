"""Large inputs reach the model server in shared memory, not through the loop's process by
copy: decoded in the pool, they come back as a segment; a large binary body is read into one and
its inputs view it. Each segment is removed once its request is answered or refused, and one
whose request was abandoned while it was decoded is removed too: none is left behind."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import time
from collections.abc import Iterator

import numpy as np
import pytest

from clockwork.frontend.decode_pool import DecodePool
from clockwork.frontend.http_server import decode_http_infer_shared
from clockwork.frontend.shared_inputs import SharedCall, open_call, share_call
from clockwork.transport.shared_segments import live_segments, locate, removals_done

from support.decoding import decode_shared_after
from support.fake_model_server import FakeModelServer
from support.live_http import LiveServer, call

MAX_BODY = 8 * 2**20


def segments_on_disk() -> set[str]:
    return {n for n in os.listdir("/dev/shm") if n.startswith("cw_in_")}


@pytest.fixture(scope="module")
def pooled() -> Iterator[tuple[LiveServer, FakeModelServer]]:
    pool = DecodePool(1, inline_max_bytes=1024)
    fake = FakeModelServer()
    server = LiveServer(fake, max_body_bytes=MAX_BODY, decoder=pool)
    asyncio.run_coroutine_threadsafe(pool.start(), server.loop).result(60)
    yield server, fake
    server.close()
    pool.close()


def all_gone(before: set[str], fake: FakeModelServer) -> None:
    """The fake keeps every call it served (and so its arrays): once it lets them go, nothing
    created meanwhile is left (other tests' servers may hold theirs)."""
    fake.calls.clear()
    deadline = time.monotonic() + 5
    while segments_on_disk() - before and time.monotonic() < deadline:
        gc.collect()
        removals_done()
        time.sleep(0.02)
    assert segments_on_disk() - before == set()
    assert live_segments() <= len(before)


def binary_ident(x: np.ndarray, datatype: str = "INT32") -> tuple[bytes, dict[str, str]]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": list(x.shape),
                    "datatype": datatype,
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
        }
    ).encode()
    return header + x.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


def test_pool_decoded_inputs_come_back_in_a_segment_removed_after_the_answer(
    pooled: tuple[LiveServer, FakeModelServer],
) -> None:
    server, fake = pooled
    before = segments_on_disk()
    x = list(range(30_000))
    body = json.dumps(
        {"inputs": [{"name": "x", "shape": [1, 30_000], "datatype": "INT32", "data": x}]}
    )
    r = call((server, fake), "POST", "/v2/models/ident/infer", body.encode())
    assert r.status == 200 and r.json()["outputs"][0]["data"] == x
    # what the model server got views a segment of this process, not a copy off a pipe
    seen = fake.calls[-1].inputs[0].data
    assert locate(seen) is not None
    del seen
    all_gone(before, fake)


def test_a_large_binary_body_is_read_into_a_segment_its_inputs_view(
    pooled: tuple[LiveServer, FakeModelServer],
) -> None:
    server, fake = pooled
    before = segments_on_disk()
    x = np.arange(40_000, dtype=np.int32).reshape(1, -1)
    body, headers = binary_ident(x)
    r = call((server, fake), "POST", "/v2/models/ident/infer", body, headers)
    assert r.status == 200 and r.json()["outputs"][0]["data"] == x[0].tolist()
    seen = fake.calls[-1].inputs[0].data
    assert locate(seen) is not None
    del seen
    all_gone(before, fake)
    # refused (the fake takes INT32 only): removed all the same
    body, headers = binary_ident(x.astype(np.float32), "FP32")
    r = call((server, fake), "POST", "/v2/models/ident/infer", body, headers)
    assert r.status == 400, r.body
    all_gone(before, fake)


def test_an_abandoned_decode_leaves_no_segment() -> None:
    before = segments_on_disk()
    n = 400_000
    body = json.dumps(
        {"inputs": [{"name": "x", "shape": [1, n], "datatype": "INT32", "data": list(range(n))}]}
    ).encode()

    async def main() -> None:
        pool = DecodePool(1, inline_max_bytes=1024)
        await pool.start()
        try:
            # a decode held up long enough to be abandoned midway (a real one takes ~30 ms)
            task = asyncio.create_task(
                pool.run_elsewhere(
                    decode_shared_after,
                    0.5,
                    body,
                    "identity",
                    None,
                    "ident",
                    "",
                    MAX_BODY,
                    None,
                )
            )
            await asyncio.sleep(0.05)  # the decode process is at it
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # its result comes anyway, and is discarded: the next job of the one decode
            # process ends after it, and its segment is the only one there
            got, _ = await pool.run_elsewhere(
                decode_http_infer_shared, body, "identity", None, "ident", "", MAX_BODY, None
            )
            assert isinstance(got, SharedCall)
            # the discarded result's segment is removed on the removal thread: let it finish
            removals_done()
            assert segments_on_disk() - before == {got.segment}
            opened, segment = open_call(got)
            assert segment is not None and opened.inputs[0].data[0, -1] == n - 1
            segment.release()
            del opened
        finally:
            pool.close()

    asyncio.run(main())
    gc.collect()
    removals_done()
    assert segments_on_disk() == before and live_segments() <= len(before)


def test_small_or_string_inputs_come_back_as_they_are() -> None:
    from clockwork.frontend.api import InferenceCall, Tensor

    small = InferenceCall("m", (Tensor("x", "INT32", np.arange(10, dtype=np.int32)),))
    assert share_call(small) is not small and isinstance(share_call(small), InferenceCall)
    words = np.array([b"a" * 100_000], dtype=object)
    strings = InferenceCall("m", (Tensor("s", "BYTES", words),))
    assert isinstance(share_call(strings), InferenceCall)


def test_a_large_grpc_request_goes_to_the_pool_and_back_in_shared_memory() -> None:
    from clockwork.frontend.grpc_server import InferenceServicer, _deserializer, _Encoded
    from clockwork.frontend.proto import inference_pb2 as pb

    before = segments_on_disk()
    x = np.arange(40_000, dtype=np.int32)
    req = pb.ModelInferRequest(model_name="ident", id="r-2")
    req.inputs.add(name="x", datatype="INT32", shape=[1, x.size])
    req.raw_input_contents.append(x.tobytes())
    fake = FakeModelServer()

    async def main() -> None:
        pool = DecodePool(1, inline_max_bytes=1024)
        await pool.start()
        try:
            parsed = _deserializer(pb.ModelInferRequest, pool)(req.SerializeToString())
            assert isinstance(parsed, _Encoded)
            response = await InferenceServicer(fake, pool).model_infer(parsed)
            out = np.frombuffer(response.raw_output_contents[0], dtype=np.int32)
            np.testing.assert_array_equal(out, x)
            assert locate(fake.calls[-1].inputs[0].data) is not None
        finally:
            pool.close()

    asyncio.run(main())
    all_gone(before, fake)


def test_a_body_in_shared_memory_is_decoded_in_place_into_a_segment_of_its_own() -> None:
    from clockwork.frontend.http_server import decode_shared_http_infer
    from clockwork.frontend.shared_body import SharedBody

    n = 100_000  # inputs large enough to travel in a segment
    text = json.dumps(
        {"inputs": [{"name": "x", "shape": [1, n], "datatype": "INT32", "data": list(range(n))}]}
    ).encode()
    body = SharedBody(len(text))
    body.view[:] = text
    try:
        got, _ = decode_shared_http_infer(
            body.name, body.size, "identity", None, "ident", "", MAX_BODY, None
        )
    finally:
        body.release()
    assert isinstance(got, SharedCall) and got.segment != body.name
    opened, segment = open_call(got)
    assert segment is not None and opened.inputs[0].data[0, -1] == n - 1
    segment.release()
    del opened
