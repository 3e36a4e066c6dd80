"""The gRPC door: an inference over the server's in-flight cap is refused with
RESOURCE_EXHAUSTED at once, while health keeps answering; HTTP and gRPC share the cap."""

from __future__ import annotations

import queue
import time
from typing import Any

import grpc
import tritonclient.grpc as tg
from tritonclient.utils import InferenceServerException

from clockwork.frontend.limits import DoorLimits, Refusal, RequestKind

from support.door import GatedModelServer, connect, door_server, head, read_answer
from support.grpc_inputs import add_inputs


def test_grpc_over_the_inflight_cap_is_resource_exhausted() -> None:
    gated = GatedModelServer()
    with door_server(DoorLimits(max_inflight=1), gated, grpc=True) as s:
        client = tg.InferenceServerClient(f"127.0.0.1:{s.grpc_port}")
        try:
            done: queue.Queue[Any] = queue.Queue()
            client.async_infer(
                "add", add_inputs(), callback=lambda result, error: done.put((result, error))
            )
            deadline = time.monotonic() + 5
            while s.call(lambda: gated.waiting) == 0:
                assert time.monotonic() < deadline, "the first inference never reached the server"
                time.sleep(0.01)
            t0 = time.monotonic()
            try:
                client.infer("add", add_inputs(), client_timeout=5)
                raise AssertionError("an inference over the cap was served")
            except InferenceServerException as e:
                assert e.status() == str(grpc.StatusCode.RESOURCE_EXHAUSTED)
                assert "1 inference requests in flight" in e.message()
            assert time.monotonic() - t0 < 5
            # control RPCs have their own cap
            assert client.is_server_live()
            # the HTTP door counts the same in-flight request
            sock = connect(s.port)
            sock.sendall(
                head("POST", "/v2/models/add/infer", {"Content-Length": "10"}) + b"0123456789"
            )
            assert read_answer(sock).status == 503
            sock.close()
            assert s.door.refusals[Refusal.INFLIGHT] == 2
            s.call(gated.gate.set)
            result, error = done.get(timeout=5)
            assert error is None
            assert result.as_numpy("sum").tolist() == [[2.0] * 4]
            assert s.call(lambda: s.door.inflight[RequestKind.INFERENCE]) == 0
            # and with the slot free again, a new inference is served
            assert client.infer("add", add_inputs()).as_numpy("diff").tolist() == [[0.0] * 4]
        finally:
            client.close()
