"""An HTTP inference request that the scheduler would refuse at arrival is refused before its
inputs are decoded, where its timeout is known without decoding them (``own_timeout``)."""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from clockwork.frontend.api import ErrorKind, FrontendError

from support.fake_model_server import FakeModelServer
from support.live_http import LiveServer, call

REFUSAL = FrontendError(ErrorKind.OVERLOADED, "OVERLOADED: 9 requests queued ahead", "OVERLOADED")


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[LiveServer, FakeModelServer]]:
    fake = FakeModelServer()
    server = LiveServer(fake, max_body_bytes=2**20)
    yield server, fake
    server.close()


@pytest.fixture
def fake(live: tuple[LiveServer, FakeModelServer]) -> FakeModelServer:
    f = live[1]
    f.calls.clear()
    f.asked_early.clear()
    f.early_refusal = REFUSAL
    return f


def add_body(**parameters: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [
            {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
            {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]},
        ]
    }
    if parameters:
        body["parameters"] = parameters
    return body


def test_a_refusal_known_at_arrival_is_given_without_decoding(
    live: tuple[LiveServer, FakeModelServer], fake: FakeModelServer
) -> None:
    r = call(live, "POST", "/v2/models/add/infer", add_body())
    assert r.status == 503 and r.json()["reason"] == "OVERLOADED"
    assert fake.asked_early == [("add", 0)] and not fake.calls
    # not decoded at all: a body that is not even JSON gets the same refusal (it would get its
    # 400 once it could be taken)
    r = call(live, "POST", "/v2/models/add/infer", b'{"inputs": [')
    assert r.status == 503 and fake.asked_early == [("add", 0)] * 2


def test_a_request_that_may_be_taken_is_decoded_and_served(
    live: tuple[LiveServer, FakeModelServer], fake: FakeModelServer
) -> None:
    fake.early_refusal = None
    r = call(live, "POST", "/v2/models/add/infer", add_body())
    assert r.status == 200 and fake.asked_early == [("add", 0)] and len(fake.calls) == 1


@pytest.mark.parametrize(
    "body",
    [
        json.dumps(add_body(timeout=5_000_000)).encode(),
        # the same key spelt with an escape
        json.dumps(add_body(timeout=5_000_000)).replace("timeout", "time\\u006fut").encode(),
    ],
    ids=["timeout", "escaped-timeout"],
)
def test_a_body_naming_its_own_timeout_is_decoded_first(
    live: tuple[LiveServer, FakeModelServer], fake: FakeModelServer, body: bytes
) -> None:
    r = call(live, "POST", "/v2/models/add/infer", body)
    assert r.status == 200 and not fake.asked_early
    assert fake.calls[0].timeout_us == 5_000_000


def test_a_compressed_body_is_decoded_first(
    live: tuple[LiveServer, FakeModelServer], fake: FakeModelServer
) -> None:
    body = gzip.compress(json.dumps(add_body()).encode())
    r = call(live, "POST", "/v2/models/add/infer", body, {"Content-Encoding": "gzip"})
    assert r.status == 200 and not fake.asked_early and len(fake.calls) == 1


def binary_add(parameters: dict[str, Any], data: bytes) -> tuple[bytes, dict[str, str]]:
    inputs = [
        {"name": n, "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}
        for n in ("a", "b")
    ]
    header = json.dumps({"inputs": inputs, "parameters": parameters}).encode()
    return header + data, {"Inference-Header-Content-Length": str(len(header))}


def test_a_binary_body_is_asked_with_the_timeout_its_header_names(
    live: tuple[LiveServer, FakeModelServer], fake: FakeModelServer
) -> None:
    # the bytes of "timeout" inside a tensor, after the JSON header: not a parameter
    data = b'"timeout"'.ljust(16, b" ") + struct.pack("<4f", 1, 1, 1, 1)
    r = call(live, "POST", "/v2/models/add/infer", *binary_add({}, data))
    assert r.status == 503 and fake.asked_early == [("add", 0)] and not fake.calls
    r = call(live, "POST", "/v2/models/add/infer", *binary_add({"timeout": 7_000}, data))
    assert r.status == 503 and fake.asked_early[-1] == ("add", 7_000) and not fake.calls
    # a header the decoder must judge: decoded, and its 400 given
    r = call(live, "POST", "/v2/models/add/infer", *binary_add({"timeout": -5}, data))
    assert r.status == 400 and len(fake.asked_early) == 2


def test_a_large_body_in_shared_memory_is_scanned_too(
    live: tuple[LiveServer, FakeModelServer], fake: FakeModelServer
) -> None:
    values = list(range(30_000))  # over 64 KiB of JSON: read into shared memory
    x = {"name": "x", "shape": [1, len(values)], "datatype": "INT32", "data": values}
    body: dict[str, Any] = {"inputs": [x]}
    r = call(live, "POST", "/v2/models/ident/infer", body)
    assert r.status == 503 and fake.asked_early == [("ident", 0)] and not fake.calls
    body["parameters"] = {"timeout": 5_000_000}
    fake.early_refusal = None
    r = call(live, "POST", "/v2/models/ident/infer", body)
    assert r.status == 200 and fake.asked_early == [("ident", 0)] and len(fake.calls) == 1
