"""Failed bearer-token attempts are limited per address: after ten wrong tokens an address gets
429 (gRPC: RESOURCE_EXHAUSTED) on everything that needs a token (its token not looked at) until
the lockout ends; health stays open, other addresses are not affected, and wrong tokens over
HTTP and gRPC count together."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from urllib.error import HTTPError

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
from tritonclient.utils import InferenceServerException

from clockwork.frontend.auth_throttle import FailedAttempts, grpc_peer_address

from support.front_door import FrontDoor
from support.security import TOKEN, TOKEN_HEADERS, control_enabled


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_locked_out_after_its_failures_and_let_in_after() -> None:
    clock = Clock()
    attempts = FailedAttempts(max_failures=3, window_s=10, lockout_s=30, clock_s=clock)
    for _ in range(2):
        attempts.failed("a")
    assert attempts.blocked_s("a") == 0
    clock.now += 11  # the window passed: counting starts again
    attempts.failed("a")
    attempts.failed("a")
    assert attempts.blocked_s("a") == 0
    attempts.failed("a")
    assert attempts.blocked_s("a") == 30 and attempts.blocked_s("b") == 0
    clock.now += 30
    assert attempts.blocked_s("a") == 0


def test_only_so_many_addresses_are_remembered() -> None:
    attempts = FailedAttempts(max_failures=1, max_addresses=2)
    for address in ("a", "b", "c"):
        attempts.failed(address)
    assert attempts.blocked_s("a") == 0  # the stalest, forgotten
    assert attempts.blocked_s("b") > 0 and attempts.blocked_s("c") > 0


def test_locking_says_whether_any_address_is_locked_out() -> None:
    clock = Clock()
    attempts = FailedAttempts(max_failures=2, lockout_s=30, clock_s=clock)
    attempts.failed("a")
    assert not attempts.locking()
    attempts.failed("a")
    assert attempts.locking()
    clock.now += 30
    assert not attempts.locking()


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:10.0.0.1:5000", "10.0.0.1"),
        ("ipv6:[::1]:5000", "::1"),
        ("ipv6:%5B::1%5D:5000", "::1"),
        ("unix:/run/x.sock", "unix:/run/x.sock"),
    ],
)
def test_a_grpc_peer_is_named_as_http_names_it(peer: str, address: str) -> None:
    assert grpc_peer_address(peer) == address


@pytest.fixture
def door() -> Iterator[FrontDoor]:
    d = FrontDoor(control_enabled(token=TOKEN))
    yield d
    d.close()


def get(door: FrontDoor, path: str, token: str | None) -> tuple[int, dict[str, str], object]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    req = urllib.request.Request(door.url + path, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read() or b"{}")
    except HTTPError as e:
        with e:
            return e.code, dict(e.headers), json.loads(e.read() or b"{}")


def test_ten_wrong_tokens_lock_the_address_out(door: FrontDoor) -> None:
    assert get(door, "/v2/models/add", TOKEN)[0] == 200
    for _ in range(10):
        assert get(door, "/v2/models/add", "guess")[0] == 401
    status, headers, body = get(door, "/v2/models/add", TOKEN)  # even the right one, now
    assert status == 429 and body["reason"] == "TOO_MANY_FAILED_ATTEMPTS"  # type: ignore[index]
    assert int(headers["Retry-After"]) > 0
    assert get(door, "/v2/health/live", None)[0] == 200


def _grpc_code(call: object) -> str:
    try:
        call()  # type: ignore[operator]
    except InferenceServerException as e:
        return str(e.status())
    return "OK"


def test_wrong_grpc_tokens_lock_the_address_out_of_both_protocols(door: FrontDoor) -> None:
    wrong = {"authorization": "Bearer guess"}
    inputs = [tg.InferInput("a", [1, 2], "FP32"), tg.InferInput("b", [1, 2], "FP32")]
    for i in inputs:
        i.set_data_from_numpy(np.ones((1, 2), np.float32))
    with tg.InferenceServerClient(door.grpc_target) as c:
        assert _grpc_code(lambda: c.infer("add", inputs, headers=TOKEN_HEADERS)) == "OK"
        for _ in range(5):
            assert _grpc_code(lambda: c.get_model_metadata("add", headers=wrong)).endswith(
                "UNAUTHENTICATED"
            )
        for _ in range(5):  # the other half of the ten over HTTP: one count per address
            assert get(door, "/v2/models/add", "guess")[0] == 401
        # the right token no longer helps, on either protocol; the stream is refused as well
        assert _grpc_code(lambda: c.infer("add", inputs, headers=TOKEN_HEADERS)).endswith(
            "RESOURCE_EXHAUSTED"
        )
        assert get(door, "/v2/models/add", TOKEN)[0] == 429
        assert c.is_server_live()  # health stays open
    with grpc.insecure_channel(door.grpc_target) as channel:
        stream = channel.stream_stream(
            "/inference.GRPCInferenceService/ModelStreamInfer",
            request_serializer=lambda m: m,
            response_deserializer=lambda b: b,
        )
        with pytest.raises(grpc.RpcError) as e:
            list(stream(iter([b""]), metadata=list(TOKEN_HEADERS.items()), timeout=10))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
