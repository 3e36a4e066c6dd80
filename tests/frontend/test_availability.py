"""Truthful availability over HTTP and gRPC: a real controller, emulated workers that join late,
leave and come back (in the server's event loop, on fixed 127.0.0.1 ports), stock tritonclient
for gRPC and plain HTTP requests for the status codes."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar
from urllib.error import HTTPError

import pytest
import tritonclient.grpc as tg
from tritonclient.utils import InferenceServerException

from clockwork.core.policies import make_policy
from clockwork.frontend.grpc_server import start_grpc
from clockwork.frontend.http_server import start_http
from clockwork.frontend.metrics import ServingMetrics
from clockwork.frontend.server import ControllerModelServer
from clockwork.service import ControllerService, WorkerService
from clockwork.service.bench_cluster import free_ports
from clockwork.service.observers import attach_observer
from clockwork.worker.assembly import emulated_setup

T = TypeVar("T")
PROFILE = "resnet50_v2-V100-32GB"
M0, M1 = "resnet50_v2-0000", "resnet50_v2-0001"
WIDTH = 602_112 // 4


class Stack:
    """A controller for two worker ports (w0 serves M0; w1 serves M0 and M1), HTTP and gRPC
    front doors, on a background loop; the workers start only when a test says so."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.http_port, self.grpc_port, *self.worker_ports = free_ports(4)
        self.workers: dict[int, WorkerService] = {}
        self.run(self._start())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    async def _start(self) -> None:
        self.ctrl = ControllerService(
            make_policy("clockwork"),
            [("127.0.0.1", p) for p in self.worker_ports],
            # lenient liveness (1 s): the clients in the test thread hold the GIL at times
            ping_interval_s=0.2,
            silence_pings=5,
            connect_backoff_s=(0.02, 0.1),
        )
        metrics = ServingMetrics()
        attach_observer(self.ctrl, metrics)
        # what `clockwork serve` reads from its repository at start: M0 and M1, and a directory
        # that no worker will serve
        self.server = ControllerModelServer(self.ctrl, metrics, [M0, M1, "broken"])
        await self.ctrl.start()
        self.http = await start_http(self.server, "127.0.0.1", self.http_port)
        self.grpc = await start_grpc(self.server, "127.0.0.1", self.grpc_port)

    def start_worker(self, index: int) -> None:
        async def start() -> None:
            worker_id = f"w{index}"
            devices, infos = emulated_setup(worker_id, 1, index + 1, PROFILE)
            worker = WorkerService(worker_id, devices, infos)
            await worker.start("127.0.0.1", self.worker_ports[index])
            self.workers[index] = worker
            async with asyncio.timeout(10):
                while worker_id not in self.ctrl.workers:
                    await asyncio.sleep(0.01)

        self.run(start())

    def stop_worker(self, index: int) -> None:
        async def stop() -> None:
            await self.workers.pop(index).close()
            async with asyncio.timeout(10):
                while f"w{index}" in self.ctrl.workers:
                    await asyncio.sleep(0.01)

        self.run(stop())

    def close(self) -> None:
        async def stop() -> None:
            await self.grpc.stop(0.1)
            await self.http.cleanup()
            await self.ctrl.close()
            for w in self.workers.values():
                await w.close()

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def stack() -> Iterator[Stack]:
    s = Stack()
    try:
        yield s
    finally:
        s.close()


def http(stack: Stack, path: str, body: object | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{stack.http_port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else {}
    except HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def infer_body() -> dict[str, object]:
    return {
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": [1, WIDTH], "data": [0.0] * WIDTH}
        ],
        "parameters": {"timeout": 5_000_000},
    }


def index(stack: Stack) -> dict[str, tuple[str, str]]:
    status, entries = http(stack, "/v2/repository/index", {})
    assert status == 200
    return {e["name"]: (e["state"], e["reason"]) for e in entries}


def grpc_error(call: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as e:
        call()
    return e.value


def test_before_the_workers_join_models_are_unavailable_not_unknown(stack: Stack) -> None:
    status, body = http(stack, f"/v2/models/{M0}")
    assert (status, body["reason"]) == (503, "MODEL_NOT_READY"), body
    assert "no worker serving it has joined yet (0 of 2" in body["error"]
    status, body = http(stack, "/v2/models/made-up")
    assert (status, body["reason"]) == (503, "WORKERS_JOINING"), body
    assert http(stack, f"/v2/models/{M0}/infer", infer_body())[0] == 503
    assert http(stack, f"/v2/models/{M0}/ready")[0] == 400
    assert http(stack, "/v2/health/ready")[0] == 503
    entries = index(stack)
    assert {n: s for n, (s, _) in entries.items()} == {
        M0: "UNAVAILABLE",
        M1: "UNAVAILABLE",
        "broken": "UNAVAILABLE",
    }
    assert "joined yet" in entries[M0][1]
    with tg.InferenceServerClient(f"127.0.0.1:{stack.grpc_port}") as g:
        assert not g.is_model_ready(M0)
        e = grpc_error(lambda: g.get_model_metadata(M0))
        assert e.status() == "StatusCode.UNAVAILABLE" and "joined yet" in e.message()
        assert grpc_error(lambda: g.get_model_metadata("made-up")).status() == (
            "StatusCode.UNAVAILABLE"
        )

    # one of the two joins: what it serves is ready; unknown names wait for the other one
    stack.start_worker(0)
    assert http(stack, f"/v2/models/{M0}/ready")[0] == 200
    assert http(stack, f"/v2/models/{M0}/infer", infer_body())[0] == 200
    status, body = http(stack, "/v2/models/made-up")
    assert status == 503 and "1 of 2 workers have joined" in body["error"]
    assert http(stack, f"/v2/models/{M1}")[0] == 503

    # both have joined: an unknown name is unknown for good
    stack.start_worker(1)
    assert http(stack, f"/v2/models/{M1}/ready")[0] == 200
    status, body = http(stack, "/v2/models/made-up")
    assert (status, body["reason"]) == (404, "MODEL_NOT_FOUND")
    status, body = http(stack, "/v2/models/broken")
    assert status == 404 and "no worker serves it" in body["error"]
    with tg.InferenceServerClient(f"127.0.0.1:{stack.grpc_port}") as g:
        assert g.is_model_ready(M0) and g.is_model_ready(M1)
        assert grpc_error(lambda: g.get_model_metadata("made-up")).status() == (
            "StatusCode.NOT_FOUND"
        )
    assert {n: s for n, (s, _) in index(stack).items()} == {
        M0: "READY",
        M1: "READY",
        "broken": "UNAVAILABLE",
    }


def test_a_model_whose_workers_are_lost_is_not_ready_until_one_returns(stack: Stack) -> None:
    stack.start_worker(0)
    stack.start_worker(1)
    assert http(stack, f"/v2/models/{M1}/ready")[0] == 200

    stack.stop_worker(1)  # the only worker that serves M1
    entries = index(stack)
    assert entries[M0] == ("READY", "")
    assert entries[M1][0] == "UNAVAILABLE"
    assert "no connected worker serves model" in entries[M1][1]
    assert http(stack, f"/v2/models/{M1}/ready")[0] == 400
    # not ready in its metadata either (as Triton answers), with why; its config stays readable
    status, body = http(stack, f"/v2/models/{M1}")
    assert (status, body["reason"]) == (503, "MODEL_NOT_READY"), body
    assert "no connected worker serves model" in body["error"]
    assert http(stack, f"/v2/models/{M1}/config")[0] == 200
    status, body = http(stack, f"/v2/models/{M1}/infer", infer_body())
    assert (status, body["reason"]) == (503, "MODEL_NOT_READY"), body
    assert http(stack, f"/v2/models/{M0}/infer", infer_body())[0] == 200
    assert http(stack, "/v2/health/ready")[0] == 200
    status, ready_only = http(stack, "/v2/repository/index", {"ready": True})
    assert [e["name"] for e in ready_only] == [M0]
    with tg.InferenceServerClient(f"127.0.0.1:{stack.grpc_port}") as g:
        assert g.is_model_ready(M0) and not g.is_model_ready(M1)
        assert g.get_model_metadata(M0).name == M0
        with pytest.raises(InferenceServerException, match="not ready"):
            g.get_model_metadata(M1)

    stack.stop_worker(0)  # none left
    assert http(stack, "/v2/health/ready")[0] == 503
    assert index(stack)[M0][0] == "UNAVAILABLE"
    assert http(stack, f"/v2/models/{M0}/infer", infer_body())[0] == 503

    stack.start_worker(1)  # it comes back: both its models are ready again
    assert index(stack)[M1] == ("READY", "")
    assert http(stack, f"/v2/models/{M1}")[0] == 200
    assert http(stack, f"/v2/models/{M1}/infer", infer_body())[0] == 200
