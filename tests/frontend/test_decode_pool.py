"""Large request bodies are decoded by the decode pool, off the loop: right answers, bounded
bombs, a dead decoder answered 503 and replaced, and a loop that keeps its beat meanwhile."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from clockwork.frontend.api import FrontendError
from clockwork.frontend.decode_pool import DecodePool
from clockwork.frontend.grpc_server import (
    InferenceServicer,
    _deserializer,
    _Encoded,
    decode_encoded_infer,
)
from clockwork.frontend.http_server import decode_http_infer
from clockwork.frontend.proto import inference_pb2 as pb

from support.fake_model_server import FakeModelServer
from support.live_http import LiveServer, call
from support.triton_clients import http_client

MAX_BODY = 8 * 2**20


@pytest.fixture(scope="module")
def pooled() -> Iterator[tuple[LiveServer, DecodePool]]:
    pool = DecodePool(1, inline_max_bytes=1024)
    server = LiveServer(FakeModelServer(), max_body_bytes=MAX_BODY, decoder=pool)
    asyncio.run_coroutine_threadsafe(pool.start(), server.loop).result(60)
    yield server, pool
    server.close()
    pool.close()


def ident_request(n: int) -> bytes:
    data = list(range(n))
    return json.dumps(
        {"inputs": [{"name": "x", "shape": [1, n], "datatype": "INT32", "data": data}]}
    ).encode()


def test_a_large_json_body_is_decoded_in_the_pool(pooled: tuple[LiveServer, DecodePool]) -> None:
    server, pool = pooled
    before = pool.offloaded
    x = np.arange(20_000, dtype=np.int32).reshape(1, -1)
    with http_client(f"127.0.0.1:{server.port}") as client:
        inp = httpclient.InferInput("x", list(x.shape), "INT32")
        inp.set_data_from_numpy(x, binary_data=False)
        out = httpclient.InferRequestedOutput("y", binary_data=False)
        result = client.infer("ident", [inp], outputs=[out])
    np.testing.assert_array_equal(result.as_numpy("y"), x)
    # the request decoded there, and its answer (80 KB of numbers as JSON text) encoded there
    assert pool.offloaded == before + 2
    # a small one stays in place, both ways
    small = call((server, FakeModelServer()), "POST", "/v2/models/ident/infer", ident_request(3))
    assert small.status == 200 and pool.offloaded == before + 2
    # binary outputs are copied, not encoded: only the request goes there
    with http_client(f"127.0.0.1:{server.port}") as client:
        inp = httpclient.InferInput("x", list(x.shape), "INT32")
        inp.set_data_from_numpy(x, binary_data=False)
        out = httpclient.InferRequestedOutput("y", binary_data=True)
        result = client.infer("ident", [inp], outputs=[out])
    np.testing.assert_array_equal(result.as_numpy("y"), x)
    assert pool.offloaded == before + 3


def test_a_gzip_bomb_costs_the_bound_not_its_size(pooled: tuple[LiveServer, DecodePool]) -> None:
    server, pool = pooled
    bomb = gzip.compress(b" " * (60 * 2**20))  # about 60 KiB that inflate to 60 MiB
    assert len(bomb) < 100 * 1024
    before = pool.offloaded
    t0 = time.monotonic()
    r = call(
        (server, FakeModelServer()),
        "POST",
        "/v2/models/ident/infer",
        bomb,
        {"Content-Encoding": "gzip"},
    )
    assert r.status == 413 and r.json()["reason"] == "PAYLOAD_TOO_LARGE"
    assert pool.offloaded == before + 1
    assert time.monotonic() - t0 < 5.0
    # a valid gzip body is inflated there too and served
    ok = call(
        (server, FakeModelServer()),
        "POST",
        "/v2/models/ident/infer",
        gzip.compress(ident_request(5)),
        {"Content-Encoding": "gzip"},
    )
    assert ok.status == 200 and ok.json()["outputs"][0]["data"] == [0, 1, 2, 3, 4]


def test_a_dead_decoder_is_answered_503_and_replaced(pooled: tuple[LiveServer, DecodePool]) -> None:
    server, pool = pooled
    executor = pool._pool
    assert executor is not None
    for pid in list(executor._processes):
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)  # the executor notices its process gone
    fake = FakeModelServer()
    r = call((server, fake), "POST", "/v2/models/ident/infer", ident_request(2000))
    assert r.status == 503 and r.json()["reason"] == "DECODER_LOST"
    assert pool.rebuilt == 1
    r = call((server, fake), "POST", "/v2/models/ident/infer", ident_request(2000))
    assert r.status == 200 and len(r.json()["outputs"][0]["data"]) == 2000


def test_large_grpc_requests_are_decoded_in_the_pool() -> None:
    x = np.arange(5000, dtype=np.int32)
    req = pb.ModelInferRequest(model_name="ident", id="r-1")
    tensor = req.inputs.add(name="x", datatype="INT32", shape=[1, 5000])
    del tensor
    req.raw_input_contents.append(x.tobytes())
    wire = req.SerializeToString()

    async def main() -> None:
        pool = DecodePool(1, inline_max_bytes=1024)
        await pool.start()
        try:
            parsed = _deserializer(pb.ModelInferRequest, pool)(wire)
            assert isinstance(parsed, _Encoded)
            servicer = InferenceServicer(FakeModelServer(), pool)
            response = await servicer.model_infer(parsed)
            assert response.id == "r-1" and pool.offloaded == 1
            out = np.frombuffer(response.raw_output_contents[0], dtype=np.int32)
            np.testing.assert_array_equal(out, x)
        finally:
            pool.close()

    asyncio.run(main())
    bad = decode_encoded_infer(b"\xff\xff\xff")
    assert bad.call is None and isinstance(bad.error, FrontendError)


def test_the_loop_keeps_its_beat_while_the_pool_decodes() -> None:
    body = ident_request(600_000)  # about 5 MB of JSON
    t0 = time.perf_counter()
    decode_http_infer(body, "identity", None, "ident", "", MAX_BODY)
    in_place_s = time.perf_counter() - t0

    async def main() -> float:
        pool = DecodePool(1)
        await pool.start()
        gaps: list[float] = []
        done = asyncio.Event()

        async def tick() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        ticker = asyncio.create_task(tick())
        try:
            call_, _ = await pool.run(
                len(body), decode_http_infer, body, "identity", None, "ident", "", MAX_BODY
            )
            assert call_.inputs[0].data.shape == (1, 600_000)
        finally:
            done.set()
            await ticker
            pool.close()
        return max(gaps)

    longest_gap_s = asyncio.run(main())
    # decoded in place, the loop would have stalled for all of it
    assert longest_gap_s < max(0.02, in_place_s / 3), (longest_gap_s, in_place_s)


def test_an_input_larger_than_the_model_takes_is_refused_in_the_pool(
    pooled: tuple[LiveServer, DecodePool],
) -> None:
    server, pool = pooled
    # the fake's "add" takes 4 numbers a sample, 8 samples at most: 32 elements
    n = 5000
    body = json.dumps(
        {
            "inputs": [
                {"name": "a", "shape": [1, n], "datatype": "FP32", "data": [0.5] * n},
                {"name": "b", "shape": [1, n], "datatype": "FP32", "data": [0.5] * n},
            ]
        }
    ).encode()
    before = pool.offloaded
    r = call((server, FakeModelServer()), "POST", "/v2/models/add/infer", body)
    assert r.status == 400 and "at most 32" in r.json()["error"], r.body
    assert pool.offloaded == before + 1


def test_large_bodies_reach_the_pool_through_shared_memory_that_is_then_removed(
    pooled: tuple[LiveServer, DecodePool],
) -> None:
    server, pool = pooled

    def segments() -> set[str]:
        return {p.name for p in Path("/dev/shm").iterdir() if p.name.startswith("psm_")}

    before, offloaded = segments(), pool.offloaded
    fake = FakeModelServer()
    ok = call((server, fake), "POST", "/v2/models/ident/infer", ident_request(3000))
    bad = call((server, fake), "POST", "/v2/models/ident/infer", b"[" * 100_000)
    bomb = call(
        (server, fake),
        "POST",
        "/v2/models/ident/infer",
        gzip.compress(b" " * (10 * 2**20)),
        {"Content-Encoding": "gzip"},
    )
    assert ok.status == 200 and len(ok.json()["outputs"][0]["data"]) == 3000
    assert bad.status == 400 and bomb.status == 413
    assert pool.offloaded >= offloaded + 3
    assert segments() <= before  # none left behind, whatever the outcome


def test_close_waits_for_the_pools_thread_and_ends_a_stuck_decode() -> None:
    """Left running after close, the pool's manager thread races the interpreter's exit hook
    (a traceback when the server stops); a decode that does not finish is ended."""

    async def main() -> None:
        pool = DecodePool(1)
        await pool.start()
        executor = pool._pool
        manager = getattr(executor, "_executor_manager_thread", None)
        assert manager is not None and manager.is_alive()
        stuck = asyncio.ensure_future(pool.run_elsewhere(time.sleep, 60))
        await asyncio.sleep(0.5)  # the sleep has reached the process
        t0 = time.perf_counter()
        pool.close(timeout_s=0.5)
        assert time.perf_counter() - t0 < 10
        assert not manager.is_alive() and not pool.pooled
        with pytest.raises(FrontendError):  # the stuck request is answered, not lost
            await stuck

    asyncio.run(main())


def test_decode_processes_yield_the_cores_to_the_server() -> None:
    async def main() -> int:
        pool = DecodePool(1, niceness=7)
        await pool.start()
        try:
            return await pool.run_elsewhere(os.nice, 0)
        finally:
            pool.close()

    assert asyncio.run(main()) == os.nice(0) + 7
