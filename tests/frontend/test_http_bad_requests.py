"""Malformed and out-of-range requests on the real HTTP front door (127.0.0.1, ``FakeModelServer``):
JSON numbers that are not numbers, or beyond the tensor's datatype, are a 400 naming the tensor;
a request aiohttp cannot even parse is answered 400 and logged as one line, without a traceback."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.error import HTTPError

import pytest
from aiohttp import web

from clockwork.frontend.http_server import start_http
from clockwork.frontend.protocol_log import LOGGER_NAME

from support.fake_model_server import FakeModelServer


class LiveServer:
    def __init__(self) -> None:
        self.fake = FakeModelServer()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner: web.AppRunner = asyncio.run_coroutine_threadsafe(
            start_http(self.fake, "127.0.0.1", 0), self.loop
        ).result(10)
        self.port: int = self.runner.addresses[0][1]

    def post(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except HTTPError as e:
            with e:
                return e.code, json.loads(e.read())

    def raw(self, request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(request)
            return s.recv(4096)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    server = LiveServer()
    yield server
    server.close()


def add_body(a_datatype: str, a_data: str) -> bytes:
    """An ``add`` request whose input ``a`` has the given datatype and JSON data, verbatim."""
    return (
        '{"inputs": ['
        f'{{"name": "a", "datatype": "{a_datatype}", "shape": [1, 4], "data": {a_data}}},'
        '{"name": "b", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}'
    ).encode()


@pytest.mark.parametrize(
    ("datatype", "data", "problem"),
    [
        ("FP32", "[1.0, NaN, 3.0, 4.0]", "element 1 is nan"),
        ("FP32", "[Infinity, 2, 3, 4]", "element 0 is inf"),
        ("FP32", "[[1, 2], [3, -Infinity]]", "element 3 is -inf"),
        ("FP16", "[1, 2, 3, 70000]", "FP16 data out of range"),
        ("FP32", "[1, 2, 3, 1e39]", "FP32 data out of range"),
        ("FP32", "[1, 2, 3, 1e400]", "element 3 is inf"),  # the parser's own overflow
        ("UINT8", "[1, 2, 3, 300]", "UINT8 data out of range [0, 255]"),
        ("INT32", f"[1, 2, 3, {2**40}]", "INT32 data out of range"),
        ("INT64", f"[1, 2, 3, {2**70}]", "INT64 data out of range"),
        ("INT8", "[[1, 2], [3, -129]]", "INT8 data out of range"),
    ],
)
def test_json_numbers_that_do_not_fit_are_a_400_naming_the_tensor(
    live: LiveServer, datatype: str, data: str, problem: str
) -> None:
    calls = len(live.fake.calls)
    status, body = live.post("/v2/models/add/infer", add_body(datatype, data))
    assert status == 400, body
    assert body["reason"] == "BAD_TENSOR"
    assert body["error"].startswith("tensor 'a': ") and problem in body["error"], body
    assert len(live.fake.calls) == calls  # refused before the model server saw it


def test_finite_json_numbers_still_pass(live: LiveServer) -> None:
    status, body = live.post("/v2/models/add/infer", add_body("FP32", "[1e38, -1e38, 0.5, 65504]"))
    assert status == 200, body


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /v2 HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /v2/models/add/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\n",
        b"GET /v2/models/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v2 HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 10_000 + b"\r\n\r\n",
    ],
)
def test_a_malformed_request_is_logged_as_one_line(
    live: LiveServer, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        reply = live.raw(request_bytes)
        # the log record is written before the answer goes out
    assert reply.startswith(b"HTTP/1.") and b" 400 " in reply.split(b"\r\n", 1)[0]
    records = [r for r in caplog.records if r.levelno > logging.DEBUG]
    assert len(records) == 1, [r.getMessage() for r in records]
    (record,) = records
    assert record.name == LOGGER_NAME and record.levelno == logging.INFO
    assert record.exc_info is None and not record.exc_text
    message = record.getMessage()
    assert "malformed request (400)" in message and "\n" not in message


def _with_shared_memory(where: str) -> bytes:
    """An ``add`` request that places one tensor (or the request) in a shared-memory region."""
    region = {"shared_memory_region": "r0", "shared_memory_byte_size": 16}
    a: dict[str, Any] = {"name": "a", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}
    b: dict[str, Any] = {"name": "b", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}
    request: dict[str, Any] = {"inputs": [a, b]}
    if where == "input":
        del a["data"]
        a["parameters"] = region
    elif where == "output":
        request["outputs"] = [{"name": "sum", "parameters": region}]
    else:
        request["parameters"] = {"shared_memory_offset": 0}
    return json.dumps(request).encode()


@pytest.mark.parametrize("where", ["input", "output", "request"])
def test_a_shared_memory_region_is_refused_by_name(live: LiveServer, where: str) -> None:
    """Without the shared-memory extensions, an input in a region would read as missing and an
    output would come back in the body while the client reads its region: both are a 400 that
    says shared memory is not supported, before the model server sees the call."""
    calls = len(live.fake.calls)
    status, body = live.post("/v2/models/add/infer", _with_shared_memory(where))
    assert status == 400, body
    assert "shared memory is not supported" in body["error"], body
    assert "shared_memory_" in body["error"], body
    assert len(live.fake.calls) == calls
