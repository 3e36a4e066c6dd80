"""The HTTP door's fast refusal: an inference request that arrives whole on an idle connection
while the door is at its in-flight limit is refused by the connection's wrapper before aiohttp
parses it, with the middleware's status, body and count, and the connection stays usable.

aiohttp's answers carry a ``Server`` header and the wrapper's do not: that tells the two paths
apart from outside."""

from __future__ import annotations

import json
import socket
import time

import pytest

from clockwork.frontend.auth import FrontDoorSecurity
from clockwork.frontend.limits import Door, DoorLimits, Refusal, RequestKind

from support.door import (
    ADD_BODY,
    INFER,
    Answer,
    DoorServer,
    GatedModelServer,
    connect,
    door_server,
    head,
    read_answer,
)

WHOLE = head(
    "POST", INFER, {"Content-Type": "application/json", "Content-Length": str(len(ADD_BODY))}
)


def _at_limit(s: DoorServer) -> socket.socket:
    """One request admitted and held by the gated model: the door is at its limit of one."""
    first = connect(s.port)
    first.sendall(WHOLE + ADD_BODY)
    deadline = time.monotonic() + 3
    while s.call(lambda: s.door.inflight[RequestKind.INFERENCE]) == 0:
        assert time.monotonic() < deadline, "the first request was never admitted"
        time.sleep(0.01)
    return first


def _read_answers(sock: socket.socket, count: int) -> list[Answer]:
    """``count`` answers from ``sock`` (pipelined answers may come in one read)."""
    sock.settimeout(5)
    data = b""
    answers: list[Answer] = []
    while len(answers) < count:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            status_line, *lines = data[:end].decode().split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines)}
            total = end + 4 + int(headers.get("content-length", "0"))
            if len(data) >= total:
                answers.append(
                    Answer(int(status_line.split()[1]), headers, data[end + 4 : total], 0)
                )
                data = data[total:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(answers)} answers"
        data += chunk
    return answers


def test_a_whole_request_at_the_limit_is_refused_before_aiohttp_and_the_connection_kept() -> None:
    with door_server(DoorLimits(max_inflight=1, adaptive_inflight=False), GatedModelServer()) as s:
        first = _at_limit(s)
        sock = connect(s.port)
        # one request, then two in one write (pipelined): each refused, none decoded
        sock.sendall(WHOLE + ADD_BODY)
        sock.sendall(WHOLE + ADD_BODY + WHOLE + ADD_BODY)
        answers = _read_answers(sock, 3)
        for answer in answers:
            assert answer.status == 503 and answer.headers["retry-after"] == "1"
            assert json.loads(answer.body)["reason"] == Refusal.INFLIGHT.value
            assert "in flight" in json.loads(answer.body)["error"]
            assert answer.headers.get("connection") != "close"
            assert "server" not in answer.headers  # aiohttp never saw them
        assert s.door.refusals[Refusal.INFLIGHT] == 3
        # the connection is in step: the next request on it is aiohttp's, and answered
        sock.sendall(head("GET", "/v2/health/live"))
        live = read_answer(sock)
        assert live.status == 200 and "server" in live.headers
        # once the slot is free the same connection is served
        assert isinstance(s.fake, GatedModelServer)
        s.call(s.fake.gate.set)
        assert read_answer(first).status == 200
        sock.sendall(WHOLE + ADD_BODY)
        assert read_answer(sock).status == 200
        assert len(s.fake.calls) == 2  # the first and the last: the refused never got there
        first.close()
        sock.close()


@pytest.mark.parametrize(
    ("request_bytes", "pause"),
    [
        (WHOLE + ADD_BODY[:10], True),  # the body comes in a later read
        (WHOLE.replace(b"HTTP/1.1", b"HTTP/1.0") + ADD_BODY, False),
        (WHOLE.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n") + ADD_BODY, False),
        (WHOLE.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n") + ADD_BODY, False),
        (
            head("POST", INFER, {"Transfer-Encoding": "chunked"})
            + b"%x\r\n%s\r\n0\r\n\r\n" % (len(ADD_BODY), ADD_BODY),
            False,
        ),
        (
            WHOLE.replace(b"Content-Length", b"Content-Length: 3\r\nContent-Length") + ADD_BODY,
            False,
        ),
    ],
    ids=["split-body", "http-1.0", "connection-close", "expect", "chunked", "two-lengths"],
)
def test_what_is_not_plain_goes_the_usual_way(request_bytes: bytes, pause: bool) -> None:
    with door_server(DoorLimits(max_inflight=1, adaptive_inflight=False), GatedModelServer()) as s:
        first = _at_limit(s)
        sock = connect(s.port)
        sock.sendall(request_bytes)
        if pause:
            time.sleep(0.2)
            sock.sendall(ADD_BODY[10:])
        expect = b"Expect:" in request_bytes
        # to Expect, aiohttp answers 100 Continue first; the refusal follows
        answer = _read_answers(sock, 2 if expect else 1)[-1]
        assert answer.status in (400, 503)
        assert "server" in answer.headers  # answered by aiohttp and the middleware
        first.close()
        sock.close()


def test_a_refusal_at_the_limit_waits_for_the_token_check() -> None:
    # with a token, the middleware's order holds: who may not call at all is told so first
    security = FrontDoorSecurity(token=b"a-token-of-sixteen-bytes-or-more")
    with door_server(
        DoorLimits(max_inflight=1, adaptive_inflight=False), GatedModelServer(), security=security
    ) as s:
        first = connect(s.port)
        auth = b"Authorization: Bearer a-token-of-sixteen-bytes-or-more\r\n"
        first.sendall(WHOLE.replace(b"\r\n\r\n", b"\r\n" + auth + b"\r\n", 1) + ADD_BODY)
        deadline = time.monotonic() + 3
        while s.call(lambda: s.door.inflight[RequestKind.INFERENCE]) == 0:
            assert time.monotonic() < deadline, "the first request was never admitted"
            time.sleep(0.01)
        sock = connect(s.port)
        sock.sendall(WHOLE + ADD_BODY)
        assert read_answer(sock).status == 401
        sock.sendall(WHOLE.replace(b"\r\n\r\n", b"\r\n" + auth + b"\r\n", 1) + ADD_BODY)
        answer = read_answer(sock)
        assert answer.status == 503 and "server" in answer.headers
        first.close()
        sock.close()


def test_full_agrees_with_at_cap_and_changes_nothing() -> None:
    door = Door(DoorLimits(max_inflight=8, initial_inflight=4, min_inflight=2))
    assert door.adaptive is not None
    for inflight in range(10):
        door.inflight[RequestKind.INFERENCE] = inflight
        binds = door.adaptive._binds
        full = door.full(RequestKind.INFERENCE)
        assert door.adaptive._binds == binds  # asking did not touch the adaptive limit
        assert full == (door.at_cap(RequestKind.INFERENCE) is not None)
