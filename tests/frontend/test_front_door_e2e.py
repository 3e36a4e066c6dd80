"""The whole front door over a real controller and an emulated worker, with stock tritonclient:
HTTP and gRPC servers, the ``ControllerModelServer``, metrics, on an event loop of their own."""

from __future__ import annotations

import asyncio
import threading
import urllib.request
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from prometheus_client.parser import text_string_to_metric_families
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

from support.security import CONTROL_HEADERS, control_enabled
from support.triton_clients import http_client

T = TypeVar("T")
PROFILE = "resnet50_v2-V100-32GB"
MODELS = ["resnet50_v2-0000", "resnet50_v2-0001"]
WIDTH = 602_112 // 4


class Stack:
    """Worker, controller, model server, HTTP and gRPC on one background event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.http_port, self.grpc_port = free_ports(2)
        self.run(self._start())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    async def _start(self) -> None:
        devices, infos = emulated_setup("w0", 1, len(MODELS), PROFILE)
        self.worker = WorkerService("w0", devices, infos)
        await self.worker.start("127.0.0.1", 0)
        # lenient liveness (1 s of silence): clients in the test thread hold the GIL for a
        # while at times, and the worker shares the controller's loop
        self.ctrl = ControllerService(
            make_policy("clockwork"),
            [("127.0.0.1", self.worker.port)],
            ping_interval_s=0.2,
            silence_pings=5,
            connect_backoff_s=(0.02, 0.2),
        )
        self.metrics = ServingMetrics()
        attach_observer(self.ctrl, self.metrics)
        self.server = ControllerModelServer(self.ctrl, self.metrics)
        await self.ctrl.start()
        await self.ctrl.wait_workers(1)
        security = control_enabled()
        self.http = await start_http(self.server, "127.0.0.1", self.http_port, security=security)
        self.grpc = await start_grpc(self.server, "127.0.0.1", self.grpc_port, security=security)

    async def _stop(self) -> None:
        await self.grpc.stop(0.1)
        await self.http.cleanup()
        await self.ctrl.close()
        await self.worker.close()

    def close(self) -> None:
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = Stack()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def http(stack: Stack) -> Iterator[th.InferenceServerClient]:
    with http_client(f"127.0.0.1:{stack.http_port}") as c:
        yield c


@pytest.fixture
def grpc(stack: Stack) -> Iterator[tg.InferenceServerClient]:
    c = tg.InferenceServerClient(f"127.0.0.1:{stack.grpc_port}")
    try:
        yield c
    finally:
        c.close()


def batch(n: int) -> np.ndarray:
    return np.random.default_rng(n).standard_normal((n, WIDTH)).astype(np.float32)


@pytest.mark.parametrize("binary", [False, True])
def test_http_inference_through_the_scheduler(
    stack: Stack, http: th.InferenceServerClient, binary: bool
) -> None:
    before = stack.ctrl.stats.successes
    x = batch(2)
    inp = th.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = th.InferRequestedOutput("output", binary_data=binary)
    result = http.infer(MODELS[0], [inp], outputs=[out], request_id="q1", timeout=500_000)
    assert result.as_numpy("output").shape == (2, 1000)
    assert result.get_response()["id"] == "q1"
    assert stack.ctrl.stats.successes - before == 2


def test_grpc_inference_and_an_infeasible_timeout(
    stack: Stack, grpc: tg.InferenceServerClient
) -> None:
    x = batch(1)
    inp = tg.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = grpc.infer(MODELS[1], [inp], priority=1)
    assert result.as_numpy("output").shape == (1, 1000)
    with pytest.raises(InferenceServerException) as e:
        grpc.infer(MODELS[1], [inp], timeout=1)  # 1 us: no plan can meet it
    assert e.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert "DEADLINE_INFEASIBLE" in e.value.message()


def test_http_refusal_codes(http: th.InferenceServerClient) -> None:
    x = batch(1)
    inp = th.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=False)
    with pytest.raises(InferenceServerException) as e:
        http.infer(MODELS[0], [inp], timeout=1)
    assert e.value.status() == "429"
    with pytest.raises(InferenceServerException) as e:
        http.infer("nope", [inp])
    assert e.value.status() == "404"
    wrong = th.InferInput("input", [1, 7], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 7), np.float32), binary_data=False)
    with pytest.raises(InferenceServerException) as e:
        http.infer(MODELS[0], [wrong])
    assert e.value.status() == "400" and "'input'" in e.value.message()


def test_unload_and_load_over_both_protocols(
    stack: Stack, http: th.InferenceServerClient, grpc: tg.InferenceServerClient
) -> None:
    model = MODELS[1]
    http.unload_model(model, headers=CONTROL_HEADERS)
    assert not grpc.is_model_ready(model)
    index = {m["name"]: m["state"] for m in http.get_model_repository_index()}
    assert index[model] == "UNAVAILABLE" and index[MODELS[0]] == "READY"
    x = batch(1)
    inp = tg.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as e:
        grpc.infer(model, [inp])
    assert e.value.status() == "StatusCode.UNAVAILABLE"
    grpc.load_model(model, headers=CONTROL_HEADERS)
    assert http.is_model_ready(model)
    assert grpc.infer(model, [inp]).as_numpy("output").shape == (1, 1000)


def test_metrics_and_statistics_count_what_was_served(
    stack: Stack, http: th.InferenceServerClient
) -> None:
    x = batch(1)
    inp = th.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    for _ in range(3):
        http.infer(MODELS[0], [inp])
    stats = http.get_inference_statistics(MODELS[0])["model_stats"][0]
    assert int(stats["inference_count"]) >= 3
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.http_port}/metrics") as r:
        text = r.read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    ok = samples[("clockwork_success_within_deadline_total", (("model", MODELS[0]),))]
    assert ok >= 3
    assert samples[("clockwork_pending_requests", ())] == 0
    # the device has served, so it holds at least the model just used, and was busy
    assert samples[("clockwork_device_resident_models", (("device", "w0/0"),))] >= 1
    assert 0 < samples[("clockwork_device_utilisation_ratio", (("device", "w0/0"),))] <= 1
