"""The gRPC front door over a fake model server, driven by the stock Triton client (and, for what
that client cannot send, by the stub generated from our own proto)."""

from __future__ import annotations

import asyncio
import logging
import queue
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any, TypeVar

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc
from tritonclient.utils import InferenceServerException

from clockwork.frontend.api import EXTENSIONS, InferenceCall, InferenceResult
from clockwork.frontend.grpc_server import REASON_METADATA_KEY, InferenceServicer, start_grpc
from clockwork.frontend.parameters import MAX_TIMEOUT_US
from clockwork.frontend.proto import inference_pb2 as pb
from clockwork.frontend.proto import inference_pb2_grpc as pb_grpc

from support.fake_model_server import INFEASIBLE_US, OVERLOAD_PRIORITY, FakeModelServer
from support.security import CONTROL_HEADERS, control_enabled

MAX_MESSAGE_BYTES = 2**20

T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _ServerThread:
    """The gRPC server on an event loop of its own thread, as it runs beside blocking clients."""

    def __init__(self, fake: FakeModelServer) -> None:
        self.fake = fake
        self.port = _free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = self.run(
            start_grpc(
                fake,
                "127.0.0.1",
                self.port,
                max_message_bytes=MAX_MESSAGE_BYTES,
                security=control_enabled(),
            )
        )

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def close(self) -> None:
        self.run(self.server.stop(None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def served() -> Iterator[_ServerThread]:
    s = _ServerThread(FakeModelServer())
    yield s
    s.close()


@pytest.fixture(scope="module")
def client(served: _ServerThread) -> Iterator[tc.InferenceServerClient]:
    c = tc.InferenceServerClient(f"127.0.0.1:{served.port}")
    yield c
    c.close()


@pytest.fixture(scope="module")
def stub(served: _ServerThread) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    channel = grpc.insecure_channel(f"127.0.0.1:{served.port}")
    yield pb_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


def _status(e: pytest.ExceptionInfo[InferenceServerException]) -> str:
    return str(e.value.status())


def _add_inputs(a: np.ndarray, b: np.ndarray) -> list[tc.InferInput]:
    inputs = [tc.InferInput("a", list(a.shape), "FP32"), tc.InferInput("b", list(b.shape), "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return inputs


A = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
B = np.array([[0.5, 0.5, 0.5, 5.0]], dtype=np.float32)


# --- health and metadata ---------------------------------------------------------------------


def test_health(served: _ServerThread, client: tc.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    served.fake.is_ready = False
    try:
        assert not client.is_server_ready()
    finally:
        served.fake.is_ready = True
    assert client.is_model_ready("add")
    with pytest.raises(InferenceServerException) as e:
        client.is_model_ready("nope")
    assert _status(e) == "StatusCode.NOT_FOUND"


def test_server_metadata_lists_extensions(client: tc.InferenceServerClient) -> None:
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "clockwork"
    assert meta["version"] == "0.1.0"
    assert meta["extensions"] == list(EXTENSIONS)


def test_model_metadata_has_batch_dimension(client: tc.InferenceServerClient) -> None:
    meta = client.get_model_metadata("add")
    assert meta.name == "add"
    assert list(meta.versions) == ["1"]
    assert meta.platform == "pytorch"
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("a", "FP32", [-1, 4]),
        ("b", "FP32", [-1, 4]),
    ]
    assert [(t.name, list(t.shape)) for t in meta.outputs] == [("sum", [-1, 4]), ("diff", [-1, 4])]
    ident = client.get_model_metadata("ident", as_json=True)
    assert ident["inputs"] == [{"name": "x", "datatype": "INT32", "shape": ["-1", "-1"]}]
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("nope")
    assert _status(e) == "StatusCode.NOT_FOUND"
    assert "nope" in str(e.value.message())


def test_model_config(client: tc.InferenceServerClient) -> None:
    config = client.get_model_config("add").config
    assert config.name == "add"
    assert config.platform == "pytorch"
    assert config.backend == "pytorch"
    assert config.max_batch_size == 8
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("a", 11, [4]),
        ("b", 11, [4]),
    ]  # 11: TYPE_FP32
    assert [o.name for o in config.output] == ["sum", "diff"]
    assert list(config.version_policy.specific.versions) == [1]
    as_json = client.get_model_config("ident", as_json=True)["config"]
    assert as_json["input"] == [{"name": "x", "data_type": "TYPE_INT32", "dims": ["-1"]}]
    with pytest.raises(InferenceServerException) as e:
        client.get_model_config("nope")
    assert _status(e) == "StatusCode.NOT_FOUND"


class _ControllerLikeConfig(FakeModelServer):
    """A model config as the controller's model server writes it: Triton's fields this proto
    declares (dynamic batching, parameters) and some it does not."""

    def model_config(self, model: str, version: str = "") -> Mapping[str, object]:
        config = dict(super().model_config(model, version))
        config["dynamic_batching"] = {"preferred_batch_size": [1, 2, 4]}
        config["parameters"] = {"default_timeout_us": {"string_value": "100000"}}
        config["instance_group"] = [{"kind": "KIND_GPU", "count": 2}]
        return config


def test_model_config_in_the_controllers_form() -> None:
    servicer = InferenceServicer(_ControllerLikeConfig())
    resp = asyncio.run(servicer.model_config(pb.ModelConfigRequest(name="add")))
    config = resp.config
    assert config.name == "add"
    assert list(config.dynamic_batching.preferred_batch_size) == [1, 2, 4]
    assert config.parameters["default_timeout_us"].string_value == "100000"
    assert config.input[0].data_type == pb.TYPE_FP32


# --- inference -------------------------------------------------------------------------------


def test_infer_fp32(served: _ServerThread, client: tc.InferenceServerClient) -> None:
    result = client.infer("add", _add_inputs(A, B), request_id="r-1")
    np.testing.assert_array_equal(result.as_numpy("sum"), A + B)
    np.testing.assert_array_equal(result.as_numpy("diff"), A - B)
    resp = result.get_response()
    assert resp.id == "r-1"
    assert resp.model_name == "add"
    assert resp.model_version == "1"
    assert resp.parameters["batch_size"].int64_param == 1
    call = served.fake.calls[-1]
    assert call.id == "r-1"
    assert call.timeout_us is None
    assert call.priority == 0


def test_infer_int32_and_requested_outputs(client: tc.InferenceServerClient) -> None:
    x = np.arange(6, dtype=np.int32).reshape(2, 3)
    inp = tc.InferInput("x", [2, 3], "INT32")
    inp.set_data_from_numpy(x)
    result = client.infer("ident", [inp])
    y = result.as_numpy("y")
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y, x)

    only_diff = client.infer("add", _add_inputs(A, B), outputs=[tc.InferRequestedOutput("diff")])
    assert only_diff.as_numpy("sum") is None
    np.testing.assert_array_equal(only_diff.as_numpy("diff"), A - B)


def test_classification(client: tc.InferenceServerClient) -> None:
    a = np.array([[1.0, 7.0, 3.0, 7.0], [4.0, 3.0, 2.0, 1.0]], dtype=np.float32)
    result = client.infer(
        "add",
        _add_inputs(a, np.zeros_like(a)),
        outputs=[tc.InferRequestedOutput("sum", class_count=2), tc.InferRequestedOutput("diff")],
    )
    top = result.as_numpy("sum")
    assert top.shape == (2, 2)
    # ties go to the lower index, as the HTTP front door does
    assert top.tolist() == [[b"7.000000:1", b"7.000000:3"], [b"4.000000:0", b"3.000000:1"]]
    assert result.get_output("sum").datatype == "BYTES"
    np.testing.assert_array_equal(result.as_numpy("diff"), a)


def test_timeout_and_priority_reach_the_model_server(
    served: _ServerThread, client: tc.InferenceServerClient
) -> None:
    # tritonclient's `timeout` is the request parameter "timeout" (schedule policy, in
    # microseconds), unlike `client_timeout`, which is the RPC deadline in seconds
    client.infer("add", _add_inputs(A, B), timeout=50_000, priority=3)
    assert served.fake.calls[-1].timeout_us == 50_000
    assert served.fake.calls[-1].priority == 3
    # the same parameter through `parameters` (where tritonclient reserves "priority")
    client.infer("add", _add_inputs(A, B), parameters={"timeout": 70_000, "note": "x"})
    call = served.fake.calls[-1]
    assert call.timeout_us == 70_000
    assert call.parameters == {"note": "x"}
    # Triton reads 0 as "no timeout given"
    client.infer("add", _add_inputs(A, B), timeout=0)
    assert served.fake.calls[-1].timeout_us is None


@pytest.mark.parametrize(
    ("kwargs", "status", "reason"),
    [
        ({"timeout": INFEASIBLE_US // 2}, "RESOURCE_EXHAUSTED", "DEADLINE_INFEASIBLE"),
        ({"priority": OVERLOAD_PRIORITY}, "UNAVAILABLE", "OVERLOADED"),
    ],
)
def test_refusals(
    client: tc.InferenceServerClient,
    stub: pb_grpc.GRPCInferenceServiceStub,
    kwargs: dict[str, int],
    status: str,
    reason: str,
) -> None:
    with pytest.raises(InferenceServerException) as e:
        client.infer("add", _add_inputs(A, B), **kwargs)
    assert _status(e) == f"StatusCode.{status}"
    # the reason travels as trailing metadata
    req = _raw_request(
        "add", [("a", "FP32", [1, 4], A.tobytes()), ("b", "FP32", [1, 4], B.tobytes())]
    )
    for key, value in kwargs.items():
        req.parameters[key].int64_param = value
    with pytest.raises(grpc.RpcError) as rpc:
        stub.ModelInfer(req)
    assert rpc.value.code() == grpc.StatusCode[status]
    assert (REASON_METADATA_KEY, reason) in tuple(rpc.value.trailing_metadata())


def test_unknown_model_is_not_found(client: tc.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as e:
        client.infer("nope", _add_inputs(A, B))
    assert _status(e) == "StatusCode.NOT_FOUND"


def test_streaming(client: tc.InferenceServerClient) -> None:
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for i in range(3):
            client.async_stream_infer("add", _add_inputs(A * i, B), request_id=f"s-{i}")
        client.async_stream_infer(
            "add", _add_inputs(A, B), request_id="s-over", priority=OVERLOAD_PRIORITY
        )
        got = [answers.get(timeout=5) for _ in range(4)]
    finally:
        client.stop_stream()
    results = {r.get_response().id: r for r, err in got if err is None}
    errors = [err for r, err in got if err is not None]
    assert sorted(results) == ["s-0", "s-1", "s-2"]
    for i in range(3):
        np.testing.assert_array_equal(results[f"s-{i}"].as_numpy("sum"), A * i + B)
    assert len(errors) == 1
    assert "overloaded" in str(errors[0])


def test_streaming_error_response_names_the_request(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    bad = _raw_request("add", [("a", "FP32", [1, 4], b"\0" * 3)])
    bad.id = "broken"
    good = _raw_request(
        "ident", [("x", "INT32", [1, 2], np.array([5, 6], dtype=np.int32).tobytes())]
    )
    good.id = "fine"
    responses = list(stub.ModelStreamInfer(iter([bad, good])))
    by_id = {r.infer_response.id: r for r in responses}
    assert set(by_id) == {"broken", "fine"}
    assert "'a'" in by_id["broken"].error_message
    assert by_id["broken"].infer_response.parameters["error_code"].string_param == (
        "INVALID_ARGUMENT"
    )
    assert by_id["fine"].error_message == ""
    assert (
        by_id["fine"].infer_response.raw_output_contents[0]
        == np.array([5, 6], dtype=np.int32).tobytes()
    )


# --- model repository and statistics ---------------------------------------------------------


def test_repository_unload_and_load(
    client: tc.InferenceServerClient, stub: pb_grpc.GRPCInferenceServiceStub
) -> None:
    index = client.get_model_repository_index(as_json=True)["models"]
    assert [(m["name"], m["state"]) for m in index] == [("add", "READY"), ("ident", "READY")]
    client.unload_model("ident", headers=CONTROL_HEADERS)
    try:
        assert not client.is_model_ready("ident")
        index = client.get_model_repository_index().models
        assert [(m.name, m.state, m.reason) for m in index] == [
            ("add", "READY", ""),
            ("ident", "UNAVAILABLE", "unloaded"),
        ]
        ready = stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True)).models
        assert [m.name for m in ready] == ["add"]
        inp = tc.InferInput("x", [1, 1], "INT32")
        inp.set_data_from_numpy(np.array([[1]], dtype=np.int32))
        with pytest.raises(InferenceServerException) as e:
            client.infer("ident", [inp])
        assert _status(e) == "StatusCode.UNAVAILABLE"
    finally:
        client.load_model("ident", headers=CONTROL_HEADERS)
    assert client.is_model_ready("ident")
    with pytest.raises(InferenceServerException) as e:
        client.unload_model("nope", headers=CONTROL_HEADERS)
    assert _status(e) == "StatusCode.NOT_FOUND"


def test_statistics(client: tc.InferenceServerClient) -> None:
    client.infer("add", _add_inputs(A, B))
    stats = client.get_inference_statistics("add").model_stats
    assert len(stats) == 1
    s = stats[0]
    assert (s.name, s.version) == ("add", "1")
    assert s.inference_count >= 1
    assert s.execution_count == s.inference_count
    assert s.last_inference > 0
    assert s.inference_stats.success.count == s.inference_count
    assert s.inference_stats.success.ns == 1000 * s.inference_count
    assert s.inference_stats.compute_infer.ns == 900
    assert [(b.batch_size, b.compute_infer.count) for b in s.batch_stats] == [
        (1, s.inference_count)
    ]
    every = client.get_inference_statistics(as_json=True)["model_stats"]
    assert [m["name"] for m in every] == ["add", "ident"]
    with pytest.raises(InferenceServerException) as e:
        client.get_inference_statistics("nope")
    assert _status(e) == "StatusCode.NOT_FOUND"


# --- what a client may get wrong -------------------------------------------------------------


def _raw_request(
    model: str, inputs: list[tuple[str, str, list[int], bytes]]
) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=model)
    for name, datatype, shape, raw in inputs:
        req.inputs.add(name=name, datatype=datatype, shape=shape)
        req.raw_input_contents.append(raw)
    return req


def _invalid(stub: pb_grpc.GRPCInferenceServiceStub, req: pb.ModelInferRequest) -> str:
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    return str(e.value.details())


def test_shape_that_disagrees_with_the_data(client: tc.InferenceServerClient) -> None:
    inputs = _add_inputs(A[:, :3], B[:, :3])
    inputs[0].set_shape([1, 4])  # 12 bytes of data for a [1, 4] FP32 tensor
    with pytest.raises(InferenceServerException) as e:
        client.infer("add", inputs)
    assert _status(e) == "StatusCode.INVALID_ARGUMENT"
    assert "'a'" in str(e.value.message())


def test_wrong_datatype(
    client: tc.InferenceServerClient, stub: pb_grpc.GRPCInferenceServiceStub
) -> None:
    inputs = [tc.InferInput("a", [1, 4], "INT32"), tc.InferInput("b", [1, 4], "FP32")]
    inputs[0].set_data_from_numpy(np.array([[1, 2, 3, 4]], dtype=np.int32))
    inputs[1].set_data_from_numpy(B)
    with pytest.raises(InferenceServerException) as e:
        client.infer("add", inputs)
    assert _status(e) == "StatusCode.INVALID_ARGUMENT"
    assert "'a'" in str(e.value.message())
    # a datatype that does not exist at all is caught before the model server
    message = _invalid(stub, _raw_request("add", [("a", "FLOAT", [1, 4], A.tobytes())]))
    assert "'a'" in message and "FLOAT" in message
    assert "BF16" in _invalid(stub, _raw_request("add", [("a", "BF16", [1, 4], b"\0" * 8)]))


def test_wrong_count_of_raw_contents(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    req = _raw_request("add", [("a", "FP32", [1, 4], A.tobytes())])
    req.inputs.add(name="b", datatype="FP32", shape=[1, 4])  # no raw entry for b
    assert "'b'" in _invalid(stub, req)
    req = _raw_request(
        "add", [("a", "FP32", [1, 4], A.tobytes()), ("b", "FP32", [1, 4], B.tobytes())]
    )
    req.raw_input_contents.append(B.tobytes())
    assert "3 raw_input_contents for 2 inputs" in _invalid(stub, req)


def test_typed_contents(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    req = pb.ModelInferRequest(model_name="add")
    a = req.inputs.add(name="a", datatype="FP32", shape=[1, 4])
    a.contents.fp32_contents.extend(A.ravel().tolist())
    b = req.inputs.add(name="b", datatype="FP32", shape=[1, 4])
    b.contents.fp32_contents.extend(B.ravel().tolist())
    resp = stub.ModelInfer(req)
    assert [o.name for o in resp.outputs] == ["sum", "diff"]
    assert np.frombuffer(resp.raw_output_contents[0], dtype=np.float32).tolist() == (
        (A + B).ravel().tolist()
    )

    req = pb.ModelInferRequest(model_name="ident")
    x = req.inputs.add(name="x", datatype="INT32", shape=[1, 3])
    x.contents.int_contents.extend([-1, 0, 7])
    assert np.frombuffer(stub.ModelInfer(req).raw_output_contents[0], dtype=np.int32).tolist() == [
        -1,
        0,
        7,
    ]

    x.contents.int_contents.append(8)  # 4 values for 3 elements
    assert "4 elements" in _invalid(stub, req)
    del x.contents.int_contents[:]
    x.contents.fp32_contents.extend([1.0, 2.0, 3.0])  # the wrong field for INT32
    assert "int_contents" in _invalid(stub, req)
    req.raw_input_contents.append(
        np.array([1, 2, 3], dtype=np.int32).tobytes()
    )  # contents and raw at once
    assert "both" in _invalid(stub, req)

    req = pb.ModelInferRequest(model_name="ident")
    req.inputs.add(name="x", datatype="INT8", shape=[1]).contents.int_contents.append(300)
    assert "out of range" in _invalid(stub, req)
    req = pb.ModelInferRequest(model_name="ident")
    req.inputs.add(name="x", datatype="INT32", shape=[1])
    assert "no data" in _invalid(stub, req)


def test_bad_request_parameters(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    base = _raw_request(
        "add", [("a", "FP32", [1, 4], A.tobytes()), ("b", "FP32", [1, 4], B.tobytes())]
    )
    req = pb.ModelInferRequest()
    req.CopyFrom(base)
    req.parameters["timeout"].string_param = "soon"
    assert "timeout" in _invalid(stub, req)
    req.parameters["timeout"].int64_param = -5
    assert "timeout" in _invalid(stub, req)
    req.CopyFrom(base)
    req.parameters["priority"].uint64_param = 2**64 - 1
    assert "priority" in _invalid(stub, req)
    req.CopyFrom(base)
    req.inputs[0].parameters["shared_memory_region"].string_param = "r0"
    assert "shared memory" in _invalid(stub, req)
    req.CopyFrom(base)
    req.outputs.add(name="sum").parameters["classification"].bool_param = True
    assert "classification" in _invalid(stub, req)
    req.CopyFrom(base)
    req.inputs[1].shape[:] = [1, -4]
    assert "'b'" in _invalid(stub, req)
    req.CopyFrom(base)
    # numpy cannot even hold this empty shape; still the client's mistake
    req.inputs[0].shape[:] = [0, 2**62, 2**62]
    req.raw_input_contents[0] = b""
    assert "'a'" in _invalid(stub, req)


def test_undecodable_message_is_invalid_argument(served: _ServerThread) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{served.port}") as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        with pytest.raises(grpc.RpcError) as e:
            call(b"\xff\xff\xff")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ModelInferRequest" in str(e.value.details())


def test_oversized_message_is_resource_exhausted(client: tc.InferenceServerClient) -> None:
    x = np.zeros((1, MAX_MESSAGE_BYTES // 4 + 16), dtype=np.int32)
    inp = tc.InferInput("x", list(x.shape), "INT32")
    inp.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as e:
        client.infer("ident", [inp])
    assert _status(e) == "StatusCode.RESOURCE_EXHAUSTED"


def test_model_server_failure_is_internal_and_logged(
    served: _ServerThread, client: tc.InferenceServerClient, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(call: InferenceCall) -> InferenceResult:
        raise RuntimeError("the model server broke")

    original: Callable[..., Any] = served.fake.infer
    served.fake.infer = broken  # type: ignore[method-assign]
    try:
        with (
            caplog.at_level(logging.ERROR, logger="clockwork.frontend.grpc_server"),
            pytest.raises(InferenceServerException) as e,
        ):
            client.infer("add", _add_inputs(A, B))
    finally:
        served.fake.infer = original  # type: ignore[method-assign]
    assert _status(e) == "StatusCode.INTERNAL"
    assert "RuntimeError" in str(e.value.message())
    assert "the model server broke" in caplog.text


def test_port_in_use_is_an_os_error(served: _ServerThread) -> None:
    with pytest.raises(OSError, match="cannot listen"):
        served.run(start_grpc(served.fake, "127.0.0.1", served.port))


@pytest.mark.parametrize("timeout_us", [-1, MAX_TIMEOUT_US + 1])
def test_timeout_out_of_bounds_is_one_bad_request(
    stub: pb_grpc.GRPCInferenceServiceStub, timeout_us: int
) -> None:
    # too small or too large: the same status and reason, and the message names the bounds
    req = _raw_request(
        "add", [("a", "FP32", [1, 4], A.tobytes()), ("b", "FP32", [1, 4], B.tobytes())]
    )
    req.parameters["timeout"].int64_param = timeout_us
    with pytest.raises(grpc.RpcError) as rpc:
        stub.ModelInfer(req)
    assert rpc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (REASON_METADATA_KEY, "BAD_REQUEST") in tuple(rpc.value.trailing_metadata())
    assert f"[0, {MAX_TIMEOUT_US}]" in str(rpc.value.details())
