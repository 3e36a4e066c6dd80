"""The HTTP/REST front door on a real 127.0.0.1 port over ``FakeModelServer``: stock
``tritonclient.http`` for the protocol, raw HTTP for what a client library would never send."""

from __future__ import annotations

import gzip
import json
import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.utils import InferenceServerException

from clockwork.frontend.api import EXTENSIONS, Tensor
from clockwork.frontend.http_server import make_app
from clockwork.frontend.parameters import MAX_TIMEOUT_US
from clockwork.frontend.tensor_codec import classify

from support.fake_model_server import INFEASIBLE_US, OVERLOAD_PRIORITY, SIGNATURES, FakeModelServer
from support.live_http import LiveServer, Reply, call
from support.security import CONTROL_HEADERS, control_enabled
from support.triton_clients import http_client

MAX_BODY = 2**20


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[LiveServer, FakeModelServer]]:
    fake = FakeModelServer()
    server = LiveServer(fake, max_body_bytes=MAX_BODY, security=control_enabled())
    yield server, fake
    server.close()


@pytest.fixture
def fake(live: tuple[LiveServer, FakeModelServer]) -> FakeModelServer:
    """The live server's fake, back in its initial state."""
    f = live[1]
    f.loaded = set(SIGNATURES)
    f.is_ready = True
    f.calls.clear()
    return f


@pytest.fixture
def client(
    live: tuple[LiveServer, FakeModelServer], fake: FakeModelServer
) -> Iterator[httpclient.InferenceServerClient]:
    with http_client(f"127.0.0.1:{live[0].port}") as c:
        yield c


def add_inputs(
    binary: bool, batch: int = 1
) -> tuple[list[httpclient.InferInput], np.ndarray, np.ndarray]:
    a = np.arange(4 * batch, dtype=np.float32).reshape(batch, 4)
    b = np.full((batch, 4), 0.5, dtype=np.float32)
    inputs = []
    for name, arr in (("a", a), ("b", b)):
        i = httpclient.InferInput(name, list(arr.shape), "FP32")
        i.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(i)
    return inputs, a, b


def add_request(**overrides: Any) -> dict[str, Any]:
    req: dict[str, Any] = {
        "inputs": [
            {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
            {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]},
        ]
    }
    req.update(overrides)
    return req


def status_of(e: pytest.ExceptionInfo[InferenceServerException]) -> str:
    return str(e.value.status())


# --- tritonclient ----------------------------------------------------------------------------


def test_health_and_server_metadata(
    client: httpclient.InferenceServerClient,
    fake: FakeModelServer,
    live: tuple[LiveServer, FakeModelServer],
) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta == {"name": "clockwork", "version": "0.1.0", "extensions": list(EXTENSIONS)}
    fake.is_ready = False
    assert not client.is_server_ready()
    r = call(live, "GET", "/v2/health/ready")
    assert r.status == 503 and r.headers["Retry-After"] == "1" and "error" in r.json()


def test_model_metadata_and_config(client: httpclient.InferenceServerClient) -> None:
    meta = client.get_model_metadata("add")
    assert meta["name"] == "add" and meta["versions"] == ["1"]
    assert meta["inputs"] == [
        {"name": "a", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "b", "datatype": "FP32", "shape": [-1, 4]},
    ]
    assert meta["outputs"][1] == {"name": "diff", "datatype": "FP32", "shape": [-1, 4]}
    assert client.get_model_metadata("ident", "1")["inputs"][0]["shape"] == [-1, -1]
    config = client.get_model_config("add", "1")
    assert config["max_batch_size"] == 8 and config["input"][0]["data_type"] == "TYPE_FP32"
    for model, version in (("nope", ""), ("add", "7")):
        with pytest.raises(InferenceServerException) as e:
            client.get_model_metadata(model, version)
        assert status_of(e) == "404"
        with pytest.raises(InferenceServerException) as e:
            client.get_model_config(model, version)
        assert status_of(e) == "404"


def test_infer_json_tensors(
    client: httpclient.InferenceServerClient, fake: FakeModelServer
) -> None:
    inputs, a, b = add_inputs(binary=False, batch=2)
    outputs = [
        httpclient.InferRequestedOutput("sum", binary_data=False),
        httpclient.InferRequestedOutput("diff", binary_data=False),
    ]
    result = client.infer("add", inputs, outputs=outputs, request_id="r-7")
    np.testing.assert_array_equal(result.as_numpy("sum"), a + b)
    np.testing.assert_array_equal(result.as_numpy("diff"), a - b)
    response = result.get_response()
    assert response["id"] == "r-7" and response["model_name"] == "add"
    assert response["model_version"] == "1" and response["parameters"] == {"batch_size": 1}
    assert all("data" in o for o in response["outputs"])
    call_ = fake.calls[-1]
    assert call_.id == "r-7" and call_.timeout_us is None and call_.priority == 0
    assert [o.name for o in call_.outputs] == ["sum", "diff"]
    np.testing.assert_array_equal(call_.inputs[0].data, a)


def test_infer_binary_tensors(
    client: httpclient.InferenceServerClient, fake: FakeModelServer
) -> None:
    inputs, a, b = add_inputs(binary=True, batch=3)
    result = client.infer("add", inputs, outputs=[httpclient.InferRequestedOutput("sum")])
    np.testing.assert_array_equal(result.as_numpy("sum"), a + b)
    assert result.get_response()["outputs"][0]["parameters"] == {"binary_data_size": 48}
    assert fake.calls[-1].inputs[1].parameters == {}  # binary_data_size is transport only
    # no outputs named: the client asks for every output in binary (binary_data_output)
    result = client.infer("add", inputs)
    np.testing.assert_array_equal(result.as_numpy("diff"), a - b)
    assert "binary_data_output" not in fake.calls[-1].parameters
    # binary INT32 in, JSON out
    x = np.array([[5, -3, 7]], dtype=np.int32)
    inp = httpclient.InferInput("x", [1, 3], "INT32")
    inp.set_data_from_numpy(x)
    result = client.infer(
        "ident", [inp], outputs=[httpclient.InferRequestedOutput("y", binary_data=False)]
    )
    np.testing.assert_array_equal(result.as_numpy("y"), x)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_infer_compressed_request(client: httpclient.InferenceServerClient, algorithm: str) -> None:
    inputs, a, b = add_inputs(binary=True)
    result = client.infer("add", inputs, request_compression_algorithm=algorithm)
    np.testing.assert_array_equal(result.as_numpy("sum"), a + b)


def test_timeout_and_priority_reach_the_server(
    client: httpclient.InferenceServerClient, fake: FakeModelServer
) -> None:
    inputs, _, _ = add_inputs(binary=True)
    client.infer("add", inputs, timeout=5_000_000, priority=3)
    assert fake.calls[-1].timeout_us == 5_000_000 and fake.calls[-1].priority == 3


def test_refusals(
    client: httpclient.InferenceServerClient, live: tuple[LiveServer, FakeModelServer]
) -> None:
    inputs, _, _ = add_inputs(binary=True)
    with pytest.raises(InferenceServerException) as e:
        client.infer("add", inputs, timeout=INFEASIBLE_US - 1)
    assert status_of(e) == "429" and "deadline" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        client.infer("add", inputs, priority=OVERLOAD_PRIORITY)
    assert status_of(e) == "503"
    with pytest.raises(InferenceServerException) as e:
        client.infer("nope", inputs)
    assert status_of(e) == "404"
    r = call(
        live, "POST", "/v2/models/add/infer", add_request(parameters={"timeout": INFEASIBLE_US - 1})
    )
    assert r.status == 429 and r.headers["Retry-After"] == "1"
    assert r.json() == {"error": "deadline cannot be met", "reason": "DEADLINE_INFEASIBLE"}
    r = call(
        live,
        "POST",
        "/v2/models/add/infer",
        add_request(parameters={"priority": OVERLOAD_PRIORITY}),
    )
    assert r.status == 503 and r.headers["Retry-After"] == "1"
    assert r.json()["reason"] == "OVERLOADED"
    r = call(live, "POST", "/v2/models/nope/versions/1/infer", add_request())
    assert r.status == 404 and "Retry-After" not in r.headers


def test_repository_index_load_unload(
    client: httpclient.InferenceServerClient, live: tuple[LiveServer, FakeModelServer]
) -> None:
    index = client.get_model_repository_index()
    assert index == [
        {"name": "add", "version": "1", "state": "READY", "reason": ""},
        {"name": "ident", "version": "1", "state": "READY", "reason": ""},
    ]
    client.unload_model("add", headers=CONTROL_HEADERS)
    assert not client.is_model_ready("add")
    assert client.is_model_ready("ident")
    r = call(live, "GET", "/v2/models/add/ready")
    assert r.status == 400 and r.json()["reason"] == "MODEL_NOT_READY"
    assert call(live, "GET", "/v2/models/nope/ready").status == 404
    inputs, _, _ = add_inputs(binary=True)
    with pytest.raises(InferenceServerException) as e:
        client.infer("add", inputs)
    assert status_of(e) == "503"
    assert call(live, "GET", "/v2/repository/index").json()[0]["state"] == "UNAVAILABLE"
    assert [
        m["name"] for m in call(live, "POST", "/v2/repository/index", {"ready": True}).json()
    ] == ["ident"]
    client.load_model("add", config='{"ignored": true}', headers=CONTROL_HEADERS)
    assert client.is_model_ready("add", "1")
    client.infer("add", inputs)
    # an empty body and unknown parameters are fine; an unknown model is not
    r = call(live, "POST", "/v2/repository/models/add/unload", b"", CONTROL_HEADERS)
    assert r.status == 200 and r.json() == {}
    assert (
        call(
            live,
            "POST",
            "/v2/repository/models/add/load",
            {"parameters": {"whatever": [1]}},
            CONTROL_HEADERS,
        ).status
        == 200
    )
    with pytest.raises(InferenceServerException) as e:
        client.load_model("nope", headers=CONTROL_HEADERS)
    assert status_of(e) == "404"


def test_statistics(client: httpclient.InferenceServerClient) -> None:
    inputs, _, _ = add_inputs(binary=True)
    client.infer("add", inputs)
    stats = client.get_inference_statistics("add")["model_stats"]
    assert len(stats) == 1
    s = stats[0]
    assert s["name"] == "add" and s["version"] == "1" and s["inference_count"] >= 1
    assert s["last_inference"] > 0 and s["execution_count"] == s["inference_count"]
    infer_stats = s["inference_stats"]
    assert set(infer_stats) >= {
        "success",
        "fail",
        "queue",
        "compute_input",
        "compute_infer",
        "compute_output",
    }
    assert infer_stats["success"] == {
        "count": s["inference_count"],
        "ns": 1000 * s["inference_count"],
    }
    assert s["batch_stats"] == [
        {
            "batch_size": 1,
            "compute_input": {"count": 0, "ns": 0},
            "compute_infer": {"count": s["inference_count"], "ns": 900},
            "compute_output": {"count": 0, "ns": 0},
        }
    ]
    everything = client.get_inference_statistics()["model_stats"]
    assert [m["name"] for m in everything] == ["add", "ident"]
    assert client.get_inference_statistics("ident", "1")["model_stats"][0]["name"] == "ident"
    with pytest.raises(InferenceServerException) as e:
        client.get_inference_statistics("nope")
    assert status_of(e) == "404"


@pytest.mark.parametrize("binary", [True, False])
def test_classification(client: httpclient.InferenceServerClient, binary: bool) -> None:
    inputs, _, _ = add_inputs(binary=binary, batch=2)  # sum = [[.5 1.5 2.5 3.5] [4.5 ... 7.5]]
    result = client.infer(
        "add",
        inputs,
        outputs=[
            httpclient.InferRequestedOutput("sum", binary_data=binary, class_count=2),
            httpclient.InferRequestedOutput("diff", binary_data=binary),
        ],
    )
    top = result.as_numpy("sum")
    assert top.shape == (2, 2)
    assert [[v.decode() if isinstance(v, bytes) else v for v in row] for row in top] == [
        ["3.500000:3", "2.500000:2"],
        ["7.500000:3", "6.500000:2"],
    ]
    assert result.get_output("sum")["datatype"] == "BYTES"
    assert result.as_numpy("diff").shape == (2, 4)
    # a count past the number of classes returns every class
    x = httpclient.InferInput("x", [1, 3], "INT32")
    x.set_data_from_numpy(np.array([[4, 9, 4]], dtype=np.int32))
    result = client.infer(
        "ident",
        [x],
        outputs=[httpclient.InferRequestedOutput("y", binary_data=binary, class_count=10)],
    )
    assert [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("y")[0]] == [
        "9:1",
        "4:0",
        "4:2",
    ]


def test_classify_orders_ties_by_index_and_handles_unsigned() -> None:
    t = Tensor("t", "UINT8", np.array([1, 255, 0, 255], dtype=np.uint8))
    assert classify(t, 3).tolist() == [b"255:1", b"255:3", b"1:0"]
    t = Tensor("t", "BOOL", np.array([[False, True], [True, True]]))
    assert classify(t, 1).tolist() == [[b"1:1"], [b"1:0"]]


# --- raw HTTP --------------------------------------------------------------------------------


def test_malformed_json(live: tuple[LiveServer, FakeModelServer]) -> None:
    for body in (b"{", b"\xff\xfe", b"[" * 100_000, b""):
        r = call(live, "POST", "/v2/models/add/infer", body)
        assert r.status == 400 and "not valid JSON" in r.json()["error"], body[:10]


BAD_REQUESTS: list[tuple[Any, str]] = [
    ([], "JSON object"),
    ({}, "'inputs'"),
    ({"inputs": "a"}, "'inputs'"),
    ({"inputs": []}, "'inputs'"),
    ({"inputs": [7]}, "inputs[0]"),
    ({"inputs": [{"shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}, "inputs[0]"),
    (add_request(inputs=[{"name": "a", "datatype": "FP32", "data": [1]}]), "'a'"),
    (add_request(inputs=[{"name": "a", "shape": 4, "datatype": "FP32", "data": [1]}]), "'a'"),
    (add_request(inputs=[{"name": "a", "shape": [4], "data": [1, 2, 3, 4]}]), "'a'"),
    (
        add_request(
            inputs=[{"name": "a", "shape": [1, 4], "datatype": "FP99", "data": [1, 2, 3, 4]}]
        ),
        "'a'",
    ),
    (
        add_request(inputs=[{"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3]}]),
        "'a'",
    ),
    (
        add_request(
            inputs=[{"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, "x", 4]}]
        ),
        "'b'",
    ),
    (
        add_request(
            inputs=[
                {"name": "a", "shape": [1, 4], "datatype": "INT32", "data": [1, 2, 3, 4]},
                {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
            ]
        ),
        "'a'",
    ),
    (
        add_request(
            inputs=[{"name": "a", "shape": [0, 2**62, 2**62], "datatype": "FP32", "data": []}]
        ),
        "'a'",
    ),
    (add_request(inputs=[{"name": "a", "shape": [1, 4], "datatype": "FP32"}]), "neither"),
    (
        add_request(
            inputs=[
                {
                    "name": "a",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "data": [1, 2, 3, 4],
                    "parameters": {"binary_data_size": 16},
                }
            ]
        ),
        "both",
    ),
    (
        add_request(
            inputs=[{"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}] * 2
        ),
        "more than once",
    ),
    (
        add_request(
            inputs=[
                {
                    "name": "a",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "data": [1, 2, 3, 4],
                    "parameters": [1],
                }
            ]
        ),
        "'parameters'",
    ),
    (add_request(id=5), "'id'"),
    (add_request(parameters="fast"), "'parameters'"),
    (add_request(parameters={"timeout": "soon"}), "'timeout'"),
    (add_request(parameters={"timeout": -1}), "'timeout'"),
    (add_request(parameters={"timeout": 2**64}), "'timeout'"),
    (add_request(parameters={"priority": True}), "'priority'"),
    (add_request(parameters={"binary_data_output": 1}), "'binary_data_output'"),
    (add_request(parameters={"nested": {"a": 1}}), "'nested'"),
    (add_request(outputs={"name": "sum"}), "'outputs'"),
    (add_request(outputs=[{"name": ""}]), "outputs[0]"),
    (add_request(outputs=[{"name": "sum"}, {"name": "sum"}]), "more than once"),
    (add_request(outputs=[{"name": "sum", "parameters": {"binary_data": "yes"}}]), "'binary_data'"),
    (
        add_request(outputs=[{"name": "sum", "parameters": {"classification": 2.5}}]),
        "'classification'",
    ),
    (add_request(outputs=[{"name": "nope"}]), "'nope'"),
]


@pytest.mark.parametrize(("body", "named"), BAD_REQUESTS)
def test_bad_infer_request(live: tuple[LiveServer, FakeModelServer], body: Any, named: str) -> None:
    r = call(live, "POST", "/v2/models/add/infer", body)
    assert r.status == 400, r.body
    assert named in r.json()["error"]


def binary_request(a_size: int | None = 16) -> bytes:
    inputs: list[dict[str, Any]] = [
        {
            "name": "a",
            "shape": [1, 4],
            "datatype": "FP32",
            "parameters": {} if a_size is None else {"binary_data_size": a_size},
        },
        {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]},
    ]
    return json.dumps(
        {
            "inputs": inputs,
            "outputs": [{"name": "sum", "parameters": {"binary_data": True}}, {"name": "diff"}],
        }
    ).encode()


def test_binary_body_layout(live: tuple[LiveServer, FakeModelServer]) -> None:
    a = np.array([1, 2, 3, 4], dtype="<f4").tobytes()
    header = binary_request()
    ok = call(
        live,
        "POST",
        "/v2/models/add/infer",
        header + a,
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert ok.status == 200 and ok.headers["Content-Type"] == "application/octet-stream"
    n = int(ok.headers["Inference-Header-Content-Length"])
    meta = json.loads(ok.body[:n])
    assert meta["outputs"][0]["parameters"] == {"binary_data_size": 16}
    assert meta["outputs"][1]["data"] == [0.0, 1.0, 2.0, 3.0]
    assert struct.unpack("<4f", ok.body[n:]) == (2.0, 3.0, 4.0, 5.0)

    cases: list[tuple[bytes, str, str]] = [
        (header + a, str(len(header) + len(a) + 1), "Inference-Header-Content-Length"),
        (header + a, "-1", "Inference-Header-Content-Length"),
        (header + a, "twelve", "Inference-Header-Content-Length"),
        (header + a[:10], str(len(header)), "'a'"),  # truncated binary data
        (header + a + b"xx", str(len(header)), "add up to 16"),  # bytes nobody claims
        (binary_request(2**62) + a, str(len(binary_request(2**62))), "'a'"),
        (binary_request(-4) + a, str(len(binary_request(-4))), "'a'"),
        (binary_request(None) + a, str(len(binary_request(None))), "'a'"),
        (header + a, "0", "not valid JSON"),
    ]
    for body, length, named in cases:
        r = call(
            live, "POST", "/v2/models/add/infer", body, {"Inference-Header-Content-Length": length}
        )
        assert r.status == 400, (length, r.body)
        assert named in r.json()["error"], (length, r.body)
    # binary data sent without the header is not silently ignored
    r = call(live, "POST", "/v2/models/add/infer", header + a)
    assert r.status == 400


def test_body_size_limit(live: tuple[LiveServer, FakeModelServer]) -> None:
    big = b" " * (MAX_BODY + 1)
    r = call(live, "POST", "/v2/models/add/infer", big)
    assert r.status == 413 and r.json()["reason"] == "PAYLOAD_TOO_LARGE"
    # the bound holds for the decoded body, whatever its compressed size
    r = call(live, "POST", "/v2/models/add/infer", gzip.compress(big), {"Content-Encoding": "gzip"})
    assert r.status == 413
    r = call(live, "POST", "/v2/repository/index", big)
    assert r.status == 413


def test_bad_encodings(live: tuple[LiveServer, FakeModelServer]) -> None:
    r = call(live, "POST", "/v2/models/add/infer", b"not gzip", {"Content-Encoding": "gzip"})
    assert r.status == 400 and r.json()["reason"] == "BAD_BODY"
    r = call(
        live,
        "POST",
        "/v2/models/add/infer",
        json.dumps(add_request()).encode(),
        {"Content-Encoding": "rot13"},
    )
    assert r.status == 400 and "rot13" in r.json()["error"]


def test_routes_and_methods(live: tuple[LiveServer, FakeModelServer]) -> None:
    r = call(live, "GET", "/v2/nothing/here")
    assert r.status == 404 and "/v2/nothing/here" in r.json()["error"]
    r = call(live, "GET", "/v2/models/add/infer")
    assert r.status == 405 and r.headers["Allow"] == "POST" and "error" in r.json()
    r = call(live, "DELETE", "/v2/health/live")
    assert r.status == 405
    assert call(live, "GET", "/v2/health/live").json() == {}


@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/health/ready", "/v2", "/metrics"])
def test_head_answers_the_headers_of_get(
    live: tuple[LiveServer, FakeModelServer], path: str
) -> None:
    """``curl -I`` and load balancers' checks ask with HEAD: the GET's status and headers, no
    body."""
    got, head = call(live, "GET", path), call(live, "HEAD", path)
    assert head.status == got.status == 200
    assert head.body == b""
    assert head.headers["Content-Type"] == got.headers["Content-Type"]
    assert call(live, "HEAD", "/v2/models/add/infer").status == 405  # POST only


def test_repository_bodies(live: tuple[LiveServer, FakeModelServer], fake: FakeModelServer) -> None:
    for path in ("/v2/repository/index", "/v2/repository/models/add/load"):
        for body in (b"{", b"[1]", b'{"ready": "yes", "parameters": 3}'):
            r = call(live, "POST", path, body, CONTROL_HEADERS)
            assert r.status == 400, (path, body, r.body)
    assert (
        call(live, "POST", "/v2/repository/models/nope/unload", None, CONTROL_HEADERS).status == 404
    )
    assert fake.loaded == set(SIGNATURES)


def test_metrics(live: tuple[LiveServer, FakeModelServer]) -> None:
    r = call(live, "GET", "/metrics")
    assert r.status == 200
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert b'clockwork_requests_total{model="add"}' in r.body


def test_server_bug_is_a_logged_500(
    live: tuple[LiveServer, FakeModelServer],
    fake: FakeModelServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(model: str, version: str = "") -> dict[str, object]:
        raise RuntimeError("boom")

    monkeypatch.setattr(fake, "model_config", broken)
    with caplog.at_level(logging.ERROR, logger="clockwork.frontend.http_server"):
        r = call(live, "GET", "/v2/models/add/config")
    assert r.status == 500 and r.json()["reason"] == "INTERNAL"
    assert any(
        "boom" in (rec.exc_text or "") or (rec.exc_info and "boom" in str(rec.exc_info[1]))
        for rec in caplog.records
    )


def test_openapi_document_lists_every_route(live: tuple[LiveServer, FakeModelServer]) -> None:
    doc = call(live, "GET", "/v2/openapi.json").json()
    assert call(live, "GET", "/openapi.json").json() == doc
    assert doc["openapi"].startswith("3.")
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    app = make_app(FakeModelServer())
    served = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        path = path.replace("{model}", "{model_name}").replace("{version}", "{model_version}")
        served.add((path, route.method.lower()))
    # HEAD is GET without the body: documented by its GET, as OpenAPI documents usually leave it
    heads = {(path, "head") for path, method in served if method == "get"}
    assert {r for r in served if r[1] == "head"} == heads
    assert served - heads == documented

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    yield v
                else:
                    yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    for ref in refs(doc):
        target: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "200" in op["responses"], (path, method)


# --- generated inference requests ------------------------------------------------------------

MUTATIONS = (
    "none",
    "drop_input",
    "datatype",
    "shape",
    "truncate",
    "extra_bytes",
    "header_length",
    "duplicate",
    "output_name",
    "classification_type",
)


@dataclass
class Generated:
    model: str
    body: bytes
    headers: dict[str, str]
    outputs: list[dict[str, Any]]  # as requested
    expected: dict[str, np.ndarray]  # every output of the model, before classification
    mutation: str


@st.composite
def infer_requests(draw: st.DrawFn) -> Generated:
    """A request for one of the fake's models (JSON or binary inputs, binary or JSON outputs,
    classification), or one with exactly one thing wrong in it."""
    model = draw(st.sampled_from(["add", "ident"]))
    batch = draw(st.integers(0, 4))
    arrays: dict[str, np.ndarray]
    if model == "add":
        floats = st.floats(-1e6, 1e6, width=32)
        arrays = {
            n: np.array(
                draw(st.lists(floats, min_size=4 * batch, max_size=4 * batch)), dtype=np.float32
            ).reshape(batch, 4)
            for n in ("a", "b")
        }
        expected = {"sum": arrays["a"] + arrays["b"], "diff": arrays["a"] - arrays["b"]}
        datatype = "FP32"
    else:
        width = draw(st.integers(0, 5))
        x = draw(
            st.lists(
                st.integers(-(2**31), 2**31 - 1), min_size=batch * width, max_size=batch * width
            )
        )
        arrays = {"x": np.array(x, dtype=np.int32).reshape(batch, width)}
        expected = {"y": arrays["x"]}
        datatype = "INT32"
    inputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, arr in arrays.items():
        spec: dict[str, Any] = {"name": name, "shape": list(arr.shape), "datatype": datatype}
        if draw(st.booleans()):
            raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
            spec["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            spec["data"] = arr.reshape(-1).tolist()
        inputs.append(spec)
    outputs: list[dict[str, Any]] = []
    for name in draw(st.lists(st.sampled_from(sorted(expected)), unique=True)):
        params: dict[str, Any] = {"binary_data": draw(st.booleans())}
        k = draw(st.integers(0, 6))
        if k:
            params["classification"] = k
        outputs.append({"name": name, "parameters": params})
    request: dict[str, Any] = {"id": "g", "inputs": inputs}
    with_outputs = bool(outputs)
    if not with_outputs:
        with_outputs = draw(st.booleans())
    if with_outputs:
        request["outputs"] = outputs
    if draw(st.booleans()):
        request["parameters"] = {"binary_data_output": draw(st.booleans())}

    mutation = draw(st.sampled_from(MUTATIONS))
    binary = b"".join(chunks)
    header_shift = 0
    if mutation == "drop_input":
        del inputs[0]
    elif mutation == "datatype":
        inputs[0]["datatype"] = "INT8" if model == "add" else "FP32"
    elif mutation == "shape":  # one element more than the data holds
        inputs[0]["shape"] = [int(arrays[inputs[0]["name"]].size) + 1]
    elif mutation == "duplicate":
        inputs.append(dict(inputs[0]))
    elif mutation == "output_name":
        request["outputs"] = [*outputs, {"name": "nope"}]
    elif mutation == "classification_type":
        request["outputs"] = [{"name": sorted(expected)[0], "parameters": {"classification": "3"}}]
    elif mutation == "truncate" and binary:
        binary = binary[:-1]
    elif mutation == "extra_bytes":
        binary += b"\0"
    elif mutation == "header_length" and chunks:
        header_shift = draw(st.sampled_from([-1, 1]))
    elif mutation != "none":
        mutation = "none"  # not applicable to this request
    header = json.dumps(request).encode()
    headers = {}
    if binary or chunks:
        headers["Inference-Header-Content-Length"] = str(len(header) + header_shift)
    return Generated(model, header + binary, headers, outputs, expected, mutation)


def top_k(rows: np.ndarray, k: int) -> list[list[bytes]]:
    """Triton's classification, computed independently of ``classify``."""
    is_float = rows.dtype.kind == "f"
    out = []
    for row in rows.tolist():
        order = sorted(range(len(row)), key=lambda i: (-row[i], i))[:k]
        out.append(
            [(f"{row[i]:f}:{i}" if is_float else f"{int(row[i])}:{i}").encode() for i in order]
        )
    return out


def decode_outputs(reply: Reply) -> dict[str, np.ndarray]:
    n = int(reply.headers.get("Inference-Header-Content-Length", len(reply.body)))
    meta = json.loads(reply.body[:n])
    assert meta["model_name"] and meta["id"] == "g"
    pos = n
    got: dict[str, np.ndarray] = {}
    for o in meta["outputs"]:
        size = o.get("parameters", {}).get("binary_data_size")
        shape = o["shape"]
        if o["datatype"] == "BYTES":
            if size is None:
                items = [x.encode() for x in o["data"]]
            else:
                items, end = [], pos + size
                while pos < end:
                    (m,) = struct.unpack_from("<I", reply.body, pos)
                    items.append(reply.body[pos + 4 : pos + 4 + m])
                    pos += 4 + m
            arr = np.empty(len(items), dtype=object)
            arr[:] = items
            got[o["name"]] = arr.reshape(shape)
        else:
            dtype = {"FP32": "<f4", "INT32": "<i4"}[o["datatype"]]
            if size is None:
                got[o["name"]] = np.array(o["data"], dtype=dtype).reshape(shape)
            else:
                got[o["name"]] = np.frombuffer(reply.body[pos : pos + size], dtype=dtype).reshape(
                    shape
                )
                pos += size
    assert pos == len(reply.body)
    return got


@given(infer_requests())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_generated_infer_requests(live: tuple[LiveServer, FakeModelServer], g: Generated) -> None:
    r = call(live, "POST", f"/v2/models/{g.model}/infer", g.body, g.headers)
    if g.mutation != "none":
        assert r.status == 400, (g.mutation, r.body)
        assert r.json()["error"]
        return
    assert r.status == 200, r.body
    got = decode_outputs(r)
    wanted = g.outputs or [{"name": n, "parameters": {}} for n in g.expected]
    assert list(got) == [o["name"] for o in wanted]
    for o in wanted:
        value, k = g.expected[o["name"]], o["parameters"].get("classification", 0)
        if k:
            rows = value.reshape(value.shape[0], int(np.prod(value.shape[1:])))
            assert got[o["name"]].tolist() == top_k(rows, k), o
        else:
            np.testing.assert_array_equal(got[o["name"]], value)


@pytest.mark.parametrize("timeout_us", [-1, MAX_TIMEOUT_US + 1])
def test_timeout_out_of_bounds_is_one_bad_request(
    live: tuple[LiveServer, FakeModelServer], timeout_us: int
) -> None:
    # too small or too large: the same status and reason, and the message names the bounds
    r = call(live, "POST", "/v2/models/add/infer", add_request(parameters={"timeout": timeout_us}))
    assert r.status == 400, r.body
    assert r.json()["reason"] == "BAD_REQUEST"
    assert f"[0, {MAX_TIMEOUT_US}]" in r.json()["error"]
