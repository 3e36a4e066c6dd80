"""The HTTP door on real 127.0.0.1 sockets: timeouts, the connection cap, refusal before the body
is read, the bound on bodies in flight, and what keeps answering while inference is at its cap."""

from __future__ import annotations

import json
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from clockwork.frontend.api import ErrorKind, FrontendError, InferenceCall, InferenceResult
from clockwork.frontend.limits import DoorLimits, Refusal, RequestKind, Timeout

from support.door import (
    ADD_BODY,
    INFER,
    DoorServer,
    closed_within,
    connect,
    door_server,
    head,
    read_answer,
)
from support.fake_model_server import FakeModelServer

# long enough that only the timer under test can close a connection in these tests
LONG_S = 30.0


def limits(**kw: float) -> DoorLimits:
    base: dict[str, float] = {
        "header_timeout_s": LONG_S,
        "body_timeout_s": LONG_S,
        "idle_timeout_s": LONG_S,
    }
    return DoorLimits(**{**base, **kw})  # type: ignore[arg-type]


def post(path: str, length: int, extra: dict[str, str] | None = None) -> bytes:
    return head(
        "POST",
        path,
        {"Content-Type": "application/json", "Content-Length": str(length), **(extra or {})},
    )


def door_metrics(s: DoorServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    sock = connect(s.port)
    sock.sendall(head("GET", "/metrics"))
    text = read_answer(sock).body.decode()
    sock.close()
    return {
        (m.name, tuple(sorted(m.labels.items()))): m.value
        for fam in text_string_to_metric_families(text)
        for m in fam.samples
        if m.name.startswith("clockwork_door_")
    }


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_inflight must be > 0"):
        DoorLimits(max_inflight=0)
    with pytest.raises(ValueError, match="max_connection_age_s must be >= 0"):
        DoorLimits(max_connection_age_s=-1)


def test_a_slowloris_is_closed_after_the_header_timeout() -> None:
    with door_server(limits(header_timeout_s=0.3)) as s:
        sock = connect(s.port)
        # the header trickles in, a few bytes at a time: each byte would reset an idle timer
        for piece in (b"POST /v2/models/add/infer HTTP/1.1\r\n", b"Host: x\r\n", b"X-A: 1\r\n"):
            sock.sendall(piece)
            time.sleep(0.1)
        took = closed_within(sock, 3.0)
        assert took is not None, "a connection with incomplete headers stayed open"
        assert s.door.timeouts[Timeout.HEADERS] == 1
        assert s.door.timeouts[Timeout.IDLE] == 0
        # a connection that completes its headers in time is served
        ok = connect(s.port)
        ok.sendall(head("GET", "/v2/health/live"))
        assert read_answer(ok).status == 200
        ok.close()
        sock.close()


def test_an_idle_keep_alive_connection_is_closed() -> None:
    with door_server(limits(idle_timeout_s=0.3)) as s:
        sock = connect(s.port)
        sock.sendall(head("GET", "/v2/health/live"))
        answer = read_answer(sock)
        assert answer.status == 200 and answer.headers.get("connection") != "close"
        assert closed_within(sock, 3.0) is not None, "an idle connection stayed open"
        assert s.door.timeouts[Timeout.IDLE] == 1
        assert s.call(lambda: s.door.open_connections["http"]) == 0
        sock.close()


def test_a_body_slower_than_the_minimum_rate_is_cut() -> None:
    with door_server(limits(body_timeout_s=0.2, min_body_rate_bytes_per_s=1000)) as s:
        sock = connect(s.port)
        sock.sendall(post(INFER, 100_000) + b'{"inputs": ')
        assert closed_within(sock, 3.0) is not None, "a stalled body kept its connection"
        assert s.door.timeouts[Timeout.BODY] == 1
        # its request no longer counts in flight, nor does its body
        assert s.call(lambda: (s.door.inflight[RequestKind.INFERENCE], s.door.body_bytes)) == (
            0,
            0,
        )
        sock.close()


def test_connections_over_the_cap_are_answered_503_at_once() -> None:
    with door_server(limits(max_connections=2)) as s:
        held = [connect(s.port) for _ in range(2)]
        # the server has accepted both before the third arrives
        for h in held:
            h.sendall(head("GET", "/v2/health/live"))
            assert read_answer(h).status == 200
        extra = connect(s.port)
        answer = read_answer(extra)
        assert answer.status == 503 and answer.headers["connection"] == "close"
        assert json.loads(answer.body)["reason"] == Refusal.CONNECTIONS.value
        assert closed_within(extra, 5.0) is not None
        assert s.door.refusals[Refusal.CONNECTIONS] == 1
        held[0].close()
        # once one closes, a new connection is served
        deadline = time.monotonic() + 3
        while s.call(lambda: s.door.open_connections["http"]) > 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        again = connect(s.port)
        again.sendall(head("GET", "/v2/health/live"))
        assert read_answer(again).status == 200
        for sock in (again, held[1], extra):
            sock.close()


def test_over_the_inflight_cap_the_refusal_comes_before_the_body() -> None:
    with door_server(limits(max_inflight=1)) as s:
        first = connect(s.port)
        # admitted, then its body stalls: it holds the one inference slot
        first.sendall(post(INFER, 10_000_000) + b'{"inputs": [')
        deadline = time.monotonic() + 3
        while s.call(lambda: s.door.inflight[RequestKind.INFERENCE]) == 0:
            assert time.monotonic() < deadline, "the first request was never admitted"
            time.sleep(0.01)
        second = connect(s.port)
        # headers only: a server that read the body first would never answer
        second.sendall(post(INFER, 10_000_000))
        answer = read_answer(second, timeout_s=3.0)
        assert answer.status == 503
        assert answer.headers["connection"] == "close" and answer.headers["retry-after"] == "1"
        assert json.loads(answer.body)["reason"] == Refusal.INFLIGHT.value
        # health and metrics have a cap of their own and keep answering
        live = connect(s.port)
        live.sendall(head("GET", "/v2/health/live"))
        assert read_answer(live).status == 200
        live.close()
        seen = door_metrics(s)
        assert seen["clockwork_door_requests_in_flight", (("kind", "inference"),)] == 1
        assert seen["clockwork_door_refusals_total", (("reason", "TOO_MANY_REQUESTS"),)] == 1
        assert seen["clockwork_door_body_bytes_in_flight", ()] == 10_000_000
        first.close()
        second.close()
        # the slot comes back once the first client goes
        deadline = time.monotonic() + 3
        while s.call(lambda: s.door.inflight[RequestKind.INFERENCE]) != 0:
            assert time.monotonic() < deadline, "the abandoned request still counts in flight"
            time.sleep(0.01)
        ok = connect(s.port)
        ok.sendall(post(INFER, len(ADD_BODY)) + ADD_BODY)
        answer = read_answer(ok)
        assert answer.status == 200, answer.body
        ok.close()


def test_a_refusal_is_timed_from_the_request_s_first_byte() -> None:
    with door_server(limits(max_inflight=1)) as s:
        first = connect(s.port)
        first.sendall(post(INFER, 10_000_000) + b'{"inputs": [')  # holds the one slot
        deadline = time.monotonic() + 3
        while s.call(lambda: s.door.inflight[RequestKind.INFERENCE]) == 0:
            assert time.monotonic() < deadline, "the first request was never admitted"
            time.sleep(0.01)
        quick, slow = connect(s.port), connect(s.port)
        quick.sendall(post(INFER, 10))
        assert read_answer(quick, timeout_s=3.0).status == 503
        request = post(INFER, 10)
        slow.sendall(request[:10])  # its first byte, then the rest of its headers later
        time.sleep(0.3)
        slow.sendall(request[10:])
        assert read_answer(slow, timeout_s=3.0).status == 503
        seen = door_metrics(s)
        assert seen["clockwork_door_refusal_seconds_count", ()] == 2
        # the quick one in the lowest buckets, the slow one past 0.25 s (its wait for its
        # headers counts: the client waited that long for its answer)
        assert seen["clockwork_door_refusal_seconds_bucket", (("le", "0.1"),)] == 1
        assert seen["clockwork_door_refusal_seconds_bucket", (("le", "0.25"),)] == 1
        assert seen["clockwork_door_refusal_seconds_bucket", (("le", "1.0"),)] == 2
        assert 0.3 <= seen["clockwork_door_refusal_seconds_sum", ()] < 1.1
        for sock in (first, quick, slow):
            sock.close()


class OverloadedModelServer(FakeModelServer):
    """A fake whose every inference the scheduler refuses, once its body was read."""

    async def infer(self, call: InferenceCall) -> InferenceResult:
        raise FrontendError(ErrorKind.OVERLOADED, "no device could fit it", "OVERLOADED")


def test_a_refusal_past_the_door_is_timed_too() -> None:
    with door_server(limits(), OverloadedModelServer()) as s:
        sock = connect(s.port)
        sock.sendall(post(INFER, len(ADD_BODY)) + ADD_BODY)
        answer = read_answer(sock)
        assert answer.status == 503 and json.loads(answer.body)["reason"] == "OVERLOADED"
        sock.sendall(head("GET", "/v2/health/live"))  # answered, not a refusal: not timed
        assert read_answer(sock).status == 200
        sock.close()
        seen = door_metrics(s)
        assert seen["clockwork_door_refusal_seconds_count", ()] == 1
        at_door = [n for (name, _), n in seen.items() if name == "clockwork_door_refusals_total"]
        assert at_door and not any(at_door)  # none of the door's own


def test_the_body_bound_refuses_what_would_cross_it() -> None:
    with door_server(limits(max_inflight_body_bytes=1_000_000)) as s:
        first = connect(s.port)
        first.sendall(post(INFER, 800_000) + b'{"inputs": [')
        deadline = time.monotonic() + 3
        while s.call(lambda: s.door.body_bytes) == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        second = connect(s.port)
        second.sendall(post(INFER, 400_000))
        answer = read_answer(second, timeout_s=3.0)
        assert answer.status == 503
        assert json.loads(answer.body)["reason"] == Refusal.BODY_MEMORY.value
        # a small one still fits beside the first
        small = connect(s.port)
        small.sendall(post(INFER, len(ADD_BODY)) + ADD_BODY)
        assert read_answer(small).status == 200
        # larger than the whole bound: never servable, so 413
        huge = connect(s.port)
        huge.sendall(post(INFER, 2_000_000))
        assert read_answer(huge, timeout_s=3.0).status == 413
        for sock in (first, second, small, huge):
            sock.close()
        deadline = time.monotonic() + 3
        while s.call(lambda: s.door.body_bytes) != 0:
            assert time.monotonic() < deadline, "the bytes of closed requests are still held"
            time.sleep(0.01)


def test_a_compressed_body_holds_what_it_may_decode_to() -> None:
    with door_server(limits(max_inflight_body_bytes=1_000_000)) as s:
        bomb = connect(s.port)
        # 100 bytes on the wire, but it may decode to the whole bound: it holds all of it
        bomb.sendall(post(INFER, 100, {"Content-Encoding": "gzip"}) + b"\x1f\x8b")
        deadline = time.monotonic() + 3
        while s.call(lambda: s.door.body_bytes) == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert s.call(lambda: s.door.body_bytes) == 1_000_000
        other = connect(s.port)
        other.sendall(post(INFER, len(ADD_BODY)) + ADD_BODY)
        answer = read_answer(other, timeout_s=3.0)
        assert answer.status == 503
        assert json.loads(answer.body)["reason"] == Refusal.BODY_MEMORY.value
        for sock in (bomb, other):
            sock.close()


def test_a_chunked_body_is_cut_when_it_crosses_the_bound() -> None:
    with door_server(limits(max_inflight_body_bytes=100_000)) as s:
        sock = connect(s.port)
        sock.sendall(
            head(
                "POST", INFER, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
            )
        )
        chunk = b"x" * 30_000
        answer = None
        for _ in range(10):
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.02)
        answer = read_answer(sock, timeout_s=3.0)
        assert answer.status == 503
        assert json.loads(answer.body)["reason"] == Refusal.BODY_MEMORY.value
        assert answer.headers["connection"] == "close"
        assert s.door.refusals[Refusal.BODY_MEMORY] == 1
        sock.close()
        deadline = time.monotonic() + 3
        while s.call(lambda: s.door.body_bytes) != 0:
            assert time.monotonic() < deadline, "the cut body's bytes are still held"
            time.sleep(0.01)


def test_a_model_that_cannot_serve_is_refused_before_its_body() -> None:
    with door_server(limits()) as s:
        s.fake.loaded.discard("add")
        sock = connect(s.port)
        sock.sendall(post(INFER, 5_000_000))
        answer = read_answer(sock, timeout_s=3.0)
        assert answer.status == 503
        assert json.loads(answer.body)["reason"] == Refusal.MODEL.value
        sock.close()
        sock = connect(s.port)
        sock.sendall(post("/v2/models/nope/infer", 5_000_000))
        answer = read_answer(sock, timeout_s=3.0)
        assert answer.status == 404 and answer.headers["connection"] == "close"
        sock.close()
        assert s.door.refusals[Refusal.MODEL] == 2
        # the fake never saw either request
        assert s.fake.calls == []
