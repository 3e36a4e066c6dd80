"""Tokens and model control on the live front door (HTTP and gRPC over ``FakeModelServer``), and
the policy object, token files and route classes they rest on."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError

import grpc
import pytest
import tritonclient.grpc as tg
from tritonclient.utils import InferenceServerException

from clockwork.core.errors import ConfigurationError
from clockwork.frontend.auth import (
    Access,
    FrontDoorSecurity,
    grpc_access,
    http_access,
)
from clockwork.frontend.http_server import make_app
from clockwork.frontend.proto import inference_pb2 as pb
from clockwork.frontend.tokens import read_token_file, token_from

from support.fake_model_server import SIGNATURES, FakeModelServer
from support.front_door import FrontDoor
from support.grpc_inputs import add_inputs
from support.security import CONTROL_HEADERS, CONTROL_TOKEN, TOKEN, TOKEN_HEADERS, control_enabled

INFER_BODY = {
    "inputs": [
        {"name": "a", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]},
        {"name": "b", "datatype": "FP32", "shape": [1, 4], "data": [1, 1, 1, 1]},
    ]
}


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: dict[str, object]


def call(
    door: FrontDoor,
    method: str,
    path: str,
    body: object = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        door.url + path, data=data, method=method, headers=dict(headers or {})
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            is_json = r.headers.get("Content-Type", "").startswith("application/json")
            return Reply(r.status, dict(r.headers), json.loads(raw) if is_json else {})
    except HTTPError as e:
        with e:
            return Reply(e.code, dict(e.headers), json.loads(e.read() or b"{}"))


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def default_door() -> Iterator[FrontDoor]:
    """The library default: no security object given."""
    d = FrontDoor(None)
    yield d
    d.close()


@pytest.fixture(scope="module")
def guarded_door() -> Iterator[FrontDoor]:
    """Inference token required, model control enabled with its own token."""
    d = FrontDoor(control_enabled(token=TOKEN))
    yield d
    d.close()


@pytest.fixture
def guarded(guarded_door: FrontDoor) -> FrontDoor:
    guarded_door.fake.loaded = set(SIGNATURES)
    guarded_door.fake.calls.clear()
    assert guarded_door.security is not None
    guarded_door.security.attempts.clear()  # each test's wrong tokens are its own
    return guarded_door


@pytest.fixture
def grpc_client(guarded: FrontDoor) -> Iterator[tg.InferenceServerClient]:
    c = tg.InferenceServerClient(guarded.grpc_target)
    yield c
    c.close()


def _grpc_status(e: pytest.ExceptionInfo[InferenceServerException]) -> str:
    return str(e.value.status())


# --- model control -----------------------------------------------------------------------------


def test_model_control_is_refused_by_default_even_with_a_token(default_door: FrontDoor) -> None:
    for headers in (None, bearer("anything"), CONTROL_HEADERS):
        r = call(default_door, "POST", "/v2/repository/models/add/unload", {}, headers)
        assert r.status == 403, r
        assert r.body["reason"] == "MODEL_CONTROL_DISABLED"
        assert "--allow-model-control" in str(r.body["error"])
    assert call(default_door, "POST", "/v2/repository/models/add/load", {}).status == 403
    assert default_door.fake.loaded == set(SIGNATURES)
    # still serving, and the rest is open without a token
    assert call(default_door, "POST", "/v2/models/add/infer", INFER_BODY).status == 200
    assert call(default_door, "GET", "/v2/models/add").status == 200
    with tg.InferenceServerClient(default_door.grpc_target) as c:
        for headers in ({}, CONTROL_HEADERS):
            with pytest.raises(InferenceServerException) as e:
                c.unload_model("add", headers=headers)
            assert _grpc_status(e) == "StatusCode.PERMISSION_DENIED"
            assert "--allow-model-control" in str(e.value.message())
        assert c.is_model_ready("add")
        assert c.infer("add", add_inputs()).as_numpy("sum").tolist() == [[2, 2, 2, 2]]


def test_http_unload_needs_the_control_token(guarded: FrontDoor) -> None:
    path = "/v2/repository/models/add/unload"
    r = call(guarded, "POST", path, {})
    assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.body["reason"] == "UNAUTHENTICATED"
    assert call(guarded, "POST", path, {}, bearer("wrong")).status == 401
    assert (
        call(guarded, "POST", path, {}, {"authorization": f"Basic {CONTROL_TOKEN}"}).status == 401
    )
    r = call(guarded, "POST", path, {}, TOKEN_HEADERS)
    assert r.status == 403 and "control token" in str(r.body["error"])
    assert guarded.fake.loaded == set(SIGNATURES)
    assert call(guarded, "POST", "/v2/models/add/infer", INFER_BODY, TOKEN_HEADERS).status == 200
    # the scheme is case-insensitive (RFC 7235)
    r = call(guarded, "POST", path, {}, {"Authorization": f"bearer {CONTROL_TOKEN}"})
    assert r.status == 200, r
    assert "add" not in guarded.fake.loaded
    assert (
        call(guarded, "POST", "/v2/repository/models/add/load", {}, CONTROL_HEADERS).status == 200
    )
    assert "add" in guarded.fake.loaded


def test_grpc_unload_needs_the_control_token(
    guarded: FrontDoor, grpc_client: tg.InferenceServerClient
) -> None:
    for headers, code in (
        ({}, "UNAUTHENTICATED"),
        (bearer("wrong"), "UNAUTHENTICATED"),
        (TOKEN_HEADERS, "PERMISSION_DENIED"),
    ):
        with pytest.raises(InferenceServerException) as e:
            grpc_client.unload_model("add", headers=headers)
        assert _grpc_status(e) == f"StatusCode.{code}", headers
    assert grpc_client.is_model_ready("add", headers=TOKEN_HEADERS)
    grpc_client.unload_model("add", headers=CONTROL_HEADERS)
    assert not grpc_client.is_model_ready("add", headers=TOKEN_HEADERS)
    grpc_client.load_model("add", headers=CONTROL_HEADERS)
    assert grpc_client.is_model_ready("add", headers=CONTROL_HEADERS)


# --- inference and metadata --------------------------------------------------------------------


def test_http_inference_and_metadata_need_the_token(guarded: FrontDoor) -> None:
    for method, path, body in (
        ("POST", "/v2/models/add/infer", INFER_BODY),
        ("GET", "/v2/models/add", None),
        ("GET", "/v2", None),
        ("GET", "/v2/repository/index", None),
        ("GET", "/v2/models/stats", None),
        ("GET", "/metrics", None),
    ):
        r = call(guarded, method, path, body)
        assert r.status == 401, (path, r)
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert r.headers["Content-Type"].startswith("application/json")
        assert set(r.body) == {"error", "reason"}
        assert call(guarded, method, path, body, bearer(TOKEN + "x")).status == 401
        assert call(guarded, method, path, body, TOKEN_HEADERS).status == 200, path
        # the control token may do what the inference token may
        assert call(guarded, method, path, body, CONTROL_HEADERS).status == 200, path
    # no route is a 401 too: a client without a token learns nothing about the routes
    assert call(guarded, "GET", "/v2/no/such/route").status == 401
    assert call(guarded, "GET", "/v2/no/such/route", None, TOKEN_HEADERS).status == 404


def test_health_and_the_api_document_stay_open(guarded: FrontDoor) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/openapi.json"):
        assert call(guarded, "GET", path).status == 200, path
    with tg.InferenceServerClient(guarded.grpc_target) as c:
        assert c.is_server_live() and c.is_server_ready()


def test_grpc_inference_needs_the_token(
    guarded: FrontDoor, grpc_client: tg.InferenceServerClient
) -> None:
    calls: tuple[Callable[[Mapping[str, str]], object], ...] = (
        lambda h: grpc_client.infer("add", add_inputs(), headers=h),
        lambda h: grpc_client.get_model_metadata("add", headers=h),
        lambda h: grpc_client.get_server_metadata(headers=h),
        lambda h: grpc_client.get_model_repository_index(headers=h),
    )
    for fn in calls:
        for headers in ({}, bearer("wrong")):
            with pytest.raises(InferenceServerException) as e:
                fn(headers)
            assert _grpc_status(e) == "StatusCode.UNAUTHENTICATED"
        assert fn(TOKEN_HEADERS) is not None
        assert fn(CONTROL_HEADERS) is not None
    result = grpc_client.infer("add", add_inputs(), headers=TOKEN_HEADERS)
    assert result.as_numpy("sum").tolist() == [[2, 2, 2, 2]]


def test_grpc_stream_without_the_token_is_refused(guarded: FrontDoor) -> None:
    with grpc.insecure_channel(guarded.grpc_target) as channel:
        stream = channel.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelStreamInferResponse.FromString,
        )
        request = pb.ModelInferRequest(model_name="add")
        with pytest.raises(grpc.RpcError) as e:
            list(stream(iter([request]), timeout=10))
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert ("clockwork-reason", "UNAUTHENTICATED") in e.value.trailing_metadata()
        unary = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelMetadata",
            request_serializer=pb.ModelMetadataRequest.SerializeToString,
            response_deserializer=pb.ModelMetadataResponse.FromString,
        )
        meta = unary(pb.ModelMetadataRequest(name="add"), metadata=tuple(TOKEN_HEADERS.items()))
        assert meta.name == "add"


def test_a_large_body_without_a_token_is_refused_before_it_is_read(guarded: FrontDoor) -> None:
    # twice the body limit: a server reading the body first would answer 413
    size = 2 * 2**20 + 1
    with socket.create_connection(("127.0.0.1", guarded.http_port), timeout=10) as s:
        s.sendall(
            b"POST /v2/models/add/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {size}\r\n\r\n".encode()
            + b"{" * 1024
        )
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 401"), reply[:200]
        # and the server closes the connection instead of reading the rest of the body
        s.settimeout(5)
        assert s.recv(65536) == b""
    assert guarded.fake.calls == []


# --- the policy, tokens and route classes ------------------------------------------------------


def test_the_policy_refuses_what_cannot_work() -> None:
    with pytest.raises(ConfigurationError, match="no control token"):
        FrontDoorSecurity(allow_model_control=True)
    with pytest.raises(ConfigurationError, match="model control is not enabled"):
        FrontDoorSecurity(control_token=b"abc")
    with pytest.raises(ConfigurationError, match="two different tokens"):
        FrontDoorSecurity(token=b"same", control_token=b"same", allow_model_control=True)
    with pytest.raises(ConfigurationError, match="empty"):
        FrontDoorSecurity(token=b"")
    with pytest.raises(ConfigurationError, match="space"):
        FrontDoorSecurity(token=b"two words")
    s = FrontDoorSecurity(token=b"secret-a", control_token=b"secret-b", allow_model_control=True)
    assert "secret" not in repr(s)
    assert s.check(Access.GUARDED, "Bearer secret-a") is None
    assert s.check(Access.GUARDED, "Bearer secret-b") is None
    assert s.check(Access.CONTROL, "Bearer secret-b") is None
    refused = s.check(Access.CONTROL, "Bearer secret-a")
    assert refused is not None and refused.http_status == 403
    assert s.check(Access.OPEN, None) is None


def test_token_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "token"
    f.write_bytes(b"abc123\n")
    f.chmod(0o600)
    assert read_token_file(f) == b"abc123"
    f.write_bytes(b"abc123\r\n")
    assert read_token_file(f) == b"abc123"
    assert not caplog.records
    f.write_bytes(b"\n")
    with pytest.raises(ConfigurationError, match="empty"):
        read_token_file(f)
    f.write_bytes(b"abc\n\n")
    with pytest.raises(ConfigurationError, match="control"):
        read_token_file(f)
    with pytest.raises(ConfigurationError, match="No such file"):
        read_token_file(tmp_path / "missing")
    f.write_bytes(b"shared")
    f.chmod(0o644)
    assert read_token_file(f) == b"shared"
    assert "readable by other users" in caplog.text
    # the file wins over the environment; an empty variable is a mistake, not "no token"
    assert token_from(f, "T", {"T": "env"}) == b"shared"
    assert token_from(None, "T", {"T": "env"}) == b"env"
    assert token_from(None, "T", {}) is None
    with pytest.raises(ConfigurationError, match=r"\$T is empty"):
        token_from(None, "T", {"T": ""})


def test_every_http_route_has_its_class() -> None:
    app = make_app(FakeModelServer())
    classes = {
        (r.method, r.resource.canonical): http_access(r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None
    }
    control = {k for k, v in classes.items() if v is Access.CONTROL}
    open_ = {k[1] for k, v in classes.items() if v is Access.OPEN}
    assert control == {
        ("POST", "/v2/repository/models/{model}/load"),
        ("POST", "/v2/repository/models/{model}/unload"),
    }
    assert open_ == {"/v2/health/live", "/v2/health/ready", "/openapi.json", "/v2/openapi.json"}
    assert http_access("GET", None) is Access.GUARDED


def test_every_grpc_method_has_its_class() -> None:
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    classes = {m.name: grpc_access(f"/{service.full_name}/{m.name}") for m in service.methods}
    assert {n for n, a in classes.items() if a is Access.CONTROL} == {
        "RepositoryModelLoad",
        "RepositoryModelUnload",
    }
    assert {n for n, a in classes.items() if a is Access.OPEN} == {"ServerLive", "ServerReady"}
    assert grpc_access("/other.Service/ServerLive") is Access.GUARDED
