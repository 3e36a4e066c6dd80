"""The door's load shedding on real 127.0.0.1 sockets: requests that queued too long refused
unread on a connection that stays open, and the adaptive in-flight limit cut by misses the
server reports, over HTTP and gRPC."""

from __future__ import annotations

import json
import time

import pytest
import tritonclient.grpc as tg
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from clockwork.frontend.adaptive_limit import AdaptiveLimit
from clockwork.frontend.api import ErrorKind, FrontendError, InferenceCall, InferenceResult
from clockwork.frontend.door_ticket import TICKET
from clockwork.frontend.limits import DoorLimits, Refusal

from support.door import ADD_BODY, INFER, DoorServer, connect, door_server, head, read_answer
from support.fake_model_server import FakeModelServer
from support.grpc_inputs import add_inputs


def post(body: bytes, length: int | None = None) -> bytes:
    headers = {"Content-Type": "application/json", "Content-Length": str(length or len(body))}
    return head("POST", INFER, headers) + body


class OverloadedServer(FakeModelServer):
    """A fake whose every inference is refused as the scheduler refuses one it has no room for,
    telling the door's ticket so."""

    async def infer(self, call: InferenceCall) -> InferenceResult:
        ticket = TICKET.get()
        assert ticket is not None, "the door gave this inference no ticket"
        ticket.timeout_ns = 100_000_000
        ticket.failed = True
        raise FrontendError(ErrorKind.OVERLOADED, "overloaded", "OVERLOADED")


def test_a_request_that_queued_past_the_target_is_refused_and_its_connection_kept() -> None:
    # a target and interval of 1 ns: from the second request on, every one "stood in a queue"
    tiny = DoorLimits(queue_delay_target_s=1e-9, queue_delay_interval_s=1e-9)
    with door_server(tiny) as s:
        sock = connect(s.port)
        sock.sendall(post(ADD_BODY))
        assert read_answer(sock).status == 200
        sock.sendall(post(ADD_BODY))
        answer = read_answer(sock)
        assert answer.status == 503 and answer.headers["retry-after"] == "1"
        assert json.loads(answer.body)["reason"] == Refusal.QUEUE_DELAY.value
        assert "waited" in json.loads(answer.body)["error"]
        # its body had all arrived: nothing to drain, and the connection carries the next one
        assert answer.headers.get("connection") != "close"
        sock.sendall(head("GET", "/v2/health/live"))
        assert read_answer(sock).status == 200
        assert s.door.refusals[Refusal.QUEUE_DELAY] == 1
        assert s.fake.calls and len(s.fake.calls) == 1  # the refused one was never decoded
        # a refused request whose body has not come is answered at once, and its connection
        # closed (the body is dropped, not read for the next request)
        late = connect(s.port)
        late.sendall(post(b"", length=100_000))
        answer = read_answer(late, timeout_s=3.0)
        assert answer.status == 503 and answer.headers["connection"] == "close"
        for c in (sock, late):
            c.close()


def test_the_queue_delay_test_can_be_turned_off() -> None:
    off = DoorLimits(queue_delay_target_s=0, queue_delay_interval_s=1e-9)
    with door_server(off) as s:
        sock = connect(s.port)
        for _ in range(3):
            sock.sendall(post(ADD_BODY))
            assert read_answer(sock).status == 200
        sock.close()
    with pytest.raises(ValueError, match="queue_delay_interval_s must be > 0"):
        DoorLimits(queue_delay_interval_s=0)


def adaptive(s: DoorServer) -> AdaptiveLimit:
    limit = s.door.adaptive
    assert limit is not None, "the door has no adaptive limit"
    return limit


def limit_metrics(port: int) -> dict[str, float]:
    sock = connect(port)
    sock.sendall(head("GET", "/metrics"))
    text = read_answer(sock).body.decode()
    sock.close()
    return {
        m.name: m.value
        for fam in text_string_to_metric_families(text)
        for m in fam.samples
        if m.name.startswith("clockwork_door_inflight_limit")
    }


def test_misses_the_server_reports_cut_the_adaptive_limit_over_http() -> None:
    limits = DoorLimits(max_inflight=64, initial_inflight=10, min_inflight=2)
    with door_server(limits, OverloadedServer()) as s:
        assert limit_metrics(s.port)["clockwork_door_inflight_limit"] == 10
        sock = connect(s.port)
        for _ in range(12):
            sock.sendall(post(ADD_BODY))
            answer = read_answer(sock)
            assert answer.status == 503
            assert json.loads(answer.body)["reason"] == "OVERLOADED"
        sock.close()
        seen = limit_metrics(s.port)
        assert seen["clockwork_door_inflight_limit"] < 10
        assert seen["clockwork_door_inflight_limit_cuts_total"] >= 1
        assert s.call(lambda: adaptive(s).limit) == seen["clockwork_door_inflight_limit"]


def test_misses_the_server_reports_cut_the_adaptive_limit_over_grpc() -> None:
    limits = DoorLimits(max_inflight=64, initial_inflight=10, min_inflight=2)
    with door_server(limits, OverloadedServer(), grpc=True) as s:
        client = tg.InferenceServerClient(f"127.0.0.1:{s.grpc_port}")
        try:
            inputs = add_inputs()
            for _ in range(12):
                with pytest.raises(InferenceServerException, match="overloaded"):
                    client.infer("add", inputs, client_timeout=5)
        finally:
            client.close()
        assert s.call(lambda: adaptive(s).cuts) >= 1
        assert s.call(lambda: adaptive(s).limit) < 10


def test_a_fixed_limit_has_no_adaptive_one() -> None:
    limits = DoorLimits(max_inflight=64, adaptive_inflight=False)
    with door_server(limits, OverloadedServer()) as s:
        sock = connect(s.port)
        for _ in range(12):
            sock.sendall(post(ADD_BODY))
            assert read_answer(sock).status == 503
        sock.close()
        assert s.door.adaptive is None
        assert limit_metrics(s.port) == {}


def test_a_timeout_counts_from_the_requests_first_byte() -> None:
    with door_server(DoorLimits()) as s:
        sock = connect(s.port)
        whole = post(ADD_BODY)
        # the request line now, the rest 80 ms later: the handler starts only then, and the
        # wait is spent of the client's timeout all the same
        sock.sendall(whole[:20])
        time.sleep(0.08)
        sock.sendall(whole[20:])
        assert read_answer(sock).status == 200
        sock.close()
        (call,) = s.fake.calls
        assert call.overhead_ns >= 80_000_000
