"""An HTTP inference request that the scheduler would refuse at arrival is refused before its
inputs are decoded, where its timeout is known without decoding them: binary tensors, whose
JSON header names it, and JSON whose ``parameters`` come first or last (``own_timeout``)."""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from clockwork.frontend.api import ErrorKind, FrontendError
from clockwork.frontend.limits import DoorLimits

from support.door import closed_within, connect, door_server, head, read_answer
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
    f.asked_samples.clear()
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


def binary_add(parameters: dict[str, Any], data: bytes) -> tuple[bytes, dict[str, str]]:
    inputs = [
        {"name": n, "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}
        for n in ("a", "b")
    ]
    header = json.dumps({"inputs": inputs, "parameters": parameters}).encode()
    return header + data, {"Inference-Header-Content-Length": str(len(header))}


ONES = struct.pack("<4f", 1, 1, 1, 1)


def test_a_refusal_known_at_arrival_is_given_without_decoding(
    live: tuple[LiveServer, FakeModelServer], fake: FakeModelServer
) -> None:
    r = call(live, "POST", "/v2/models/add/infer", *binary_add({}, ONES + ONES))
    assert r.status == 503 and r.json()["reason"] == "OVERLOADED"
    assert fake.asked_early == [("add", 0)] and not fake.calls
    # the tensors are not decoded at all: too few bytes of them get the same refusal (they
    # would get their 400 once the request could be taken)
    r = call(live, "POST", "/v2/models/add/infer", *binary_add({}, ONES))
    assert r.status == 503 and fake.asked_early == [("add", 0)] * 2


def test_a_request_that_may_be_taken_is_decoded_and_served(
    live: tuple[LiveServer, FakeModelServer], fake: FakeModelServer
) -> None:
    fake.early_refusal = None
    r = call(live, "POST", "/v2/models/add/infer", *binary_add({}, ONES + ONES))
    assert r.status == 200 and fake.asked_early == [("add", 0)] and len(fake.calls) == 1


def test_a_binary_body_is_asked_with_the_timeout_its_header_names(
    live: tuple[LiveServer, FakeModelServer], fake: FakeModelServer
) -> None:
    # the bytes of "timeout" inside a tensor, after the JSON header: not a parameter
    data = b'"timeout"'.ljust(16, b" ") + ONES
    r = call(live, "POST", "/v2/models/add/infer", *binary_add({}, data))
    assert r.status == 503 and fake.asked_early == [("add", 0)] and not fake.calls
    r = call(live, "POST", "/v2/models/add/infer", *binary_add({"timeout": 7_000}, data))
    assert r.status == 503 and fake.asked_early[-1] == ("add", 7_000) and not fake.calls
    # a header the decoder must judge: decoded, and its 400 given
    r = call(live, "POST", "/v2/models/add/infer", *binary_add({"timeout": -5}, data))
    assert r.status == 400 and len(fake.asked_early) == 2


@pytest.mark.parametrize("timeout", [None, 5_000_000])
def test_an_all_json_body_is_asked_with_the_timeout_its_last_parameters_name(
    live: tuple[LiveServer, FakeModelServer], fake: FakeModelServer, timeout: int | None
) -> None:
    # parameters after the inputs, as tritonclient and clockwork bench write them
    body = add_body(priority=1) if timeout is None else add_body(priority=1, timeout=timeout)
    r = call(live, "POST", "/v2/models/add/infer", body)
    assert r.status == 503 and r.json()["reason"] == "OVERLOADED"
    assert fake.asked_early == [("add", timeout or 0)] and not fake.calls
    fake.early_refusal = None
    r = call(live, "POST", "/v2/models/add/infer", body)
    assert r.status == 200 and len(fake.calls) == 1
    assert fake.calls[0].timeout_us == timeout


def test_an_all_json_body_naming_no_timeout_anywhere_is_asked_with_the_default(
    live: tuple[LiveServer, FakeModelServer], fake: FakeModelServer
) -> None:
    # no "parameters" key and no backslash anywhere in it (perf_analyzer's JSON): the model's
    # default, asked before decoding
    r = call(live, "POST", "/v2/models/add/infer", add_body())
    assert r.status == 503 and fake.asked_early == [("add", 0)] and not fake.calls


def test_an_all_json_body_whose_ends_do_not_tell_is_decoded_first(
    live: tuple[LiveServer, FakeModelServer], fake: FakeModelServer
) -> None:
    fake.early_refusal = None
    # the parameters of an input are not the request's, but a key by that name is there: only
    # decoding tells where it is
    body = add_body()
    body["inputs"][1]["parameters"] = {"timeout": 7}
    r = call(live, "POST", "/v2/models/add/infer", body)
    assert r.status == 200 and not fake.asked_early and fake.calls[-1].timeout_us is None
    # a backslash could spell the key another way ("\u0070arameters")
    raw = json.dumps(add_body()).replace('"name": "a"', '"name": "\\u0061"').encode()
    r = call(live, "POST", "/v2/models/add/infer", raw, {"Content-Type": "application/json"})
    assert r.status == 200 and not fake.asked_early and len(fake.calls) == 2


def test_a_compressed_body_is_decoded_first(
    live: tuple[LiveServer, FakeModelServer], fake: FakeModelServer
) -> None:
    fake.early_refusal = None
    body, headers = binary_add({}, ONES + ONES)
    headers = {**headers, "Content-Encoding": "gzip"}
    r = call(live, "POST", "/v2/models/add/infer", gzip.compress(body), headers)
    assert r.status == 200 and not fake.asked_early and len(fake.calls) == 1


def test_a_large_binary_body_in_shared_memory_is_asked_too(
    live: tuple[LiveServer, FakeModelServer], fake: FakeModelServer
) -> None:
    n = 30_000  # 120 KB of INT32: read into shared memory
    x = {
        "name": "x",
        "shape": [1, n],
        "datatype": "INT32",
        "parameters": {"binary_data_size": 4 * n},
    }
    header = json.dumps({"inputs": [x]}).encode()
    raw = header + bytes(4 * n)
    headers = {"Inference-Header-Content-Length": str(len(header))}
    r = call(live, "POST", "/v2/models/ident/infer", raw, headers)
    assert r.status == 503 and fake.asked_early == [("ident", 0)] and not fake.calls
    fake.early_refusal = None
    r = call(live, "POST", "/v2/models/ident/infer", raw, headers)
    assert r.status == 200 and fake.asked_early == [("ident", 0)] * 2 and len(fake.calls) == 1


def test_a_call_is_asked_about_with_the_samples_its_shape_names(
    live: tuple[LiveServer, FakeModelServer], fake: FakeModelServer
) -> None:
    # a call of 3 samples is judged as 3 requests: binary (from the header) and JSON (from the
    # first input's shape, ahead of its data)
    header = json.dumps(
        {
            "inputs": [
                {"name": n, "shape": [3, 4], "datatype": "FP32"}
                | {"parameters": {"binary_data_size": 48}}
                for n in ("a", "b")
            ]
        }
    ).encode()
    data = ONES * 6
    headers = {"Inference-Header-Content-Length": str(len(header))}
    r = call(live, "POST", "/v2/models/add/infer", header + data, headers)
    assert r.status == 503 and fake.asked_samples == [3]
    body = {
        "inputs": [
            {"name": n, "shape": [3, 4], "datatype": "FP32", "data": [1.0] * 12} for n in ("a", "b")
        ],
        "parameters": {"timeout": 9_000},
    }
    r = call(live, "POST", "/v2/models/add/infer", body)
    assert r.status == 503 and fake.asked_samples == [3, 3]
    assert fake.asked_early[-1] == ("add", 9_000) and not fake.calls


@pytest.mark.parametrize("binary", [True, False])
def test_a_large_body_is_refused_once_its_head_is_in_and_the_rest_is_not_read(
    binary: bool,
) -> None:
    # 4 MiB of tensor data follow a head that says enough (a binary header; JSON whose
    # parameters and shape come first): the refusal comes while the client has sent 64 KiB
    fake = FakeModelServer()
    fake.early_refusal = REFUSAL
    n = 1 << 20  # floats
    if binary:
        header = json.dumps(
            {
                "inputs": [
                    {"name": x, "shape": [2, n // 2], "datatype": "FP32"}
                    | {"parameters": {"binary_data_size": 4 * n}}
                    for x in ("a", "b")
                ],
                "parameters": {"timeout": 7_000},
            }
        ).encode()
        size = len(header) + 8 * n
        extra = {"Inference-Header-Content-Length": str(len(header))}
        start = header
    else:
        start = b'{"parameters": {"timeout": 7000}, "inputs": [{"name": "a", "shape": [2, 2]'
        size = 8 * n
        extra = {}
    with door_server(DoorLimits(), fake) as s:
        sock = connect(s.port)
        try:
            sock.sendall(
                head(
                    "POST",
                    "/v2/models/add/infer",
                    {"Content-Length": str(size), "Content-Type": "application/json", **extra},
                )
                + start
                + b" " * (65536 - len(start))
            )
            answer = read_answer(sock)
            assert answer.status == 503 and json.loads(answer.body)["reason"] == "OVERLOADED"
            assert answer.headers.get("connection", "").lower() == "close"
            assert fake.asked_early == [("add", 7_000)] and fake.asked_samples == [2]
            assert not fake.calls
            # the rest of the body is taken and dropped, then the connection closes
            sock.sendall(b" " * (size - 65536))
            assert closed_within(sock, 5.0) is not None
        finally:
            sock.close()
