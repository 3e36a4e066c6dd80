"""Models of one's own (.pt2 and .onnx, Triton layout) served through the real front door.

An MLP, a small conv net and a transformer encoder are made here, exported to both forms,
imported into a repository (``config.pbtxt``), profiled, and served by a torch (CPU) worker
behind the controller and the HTTP and gRPC doors; stock tritonclient asks, and the answers are
compared with eager PyTorch. A broken model in the same repository is skipped (the others are
served) and a repository load of it answers 400 with the file and the problem.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import torch
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from clockwork.core.policies import make_policy
from clockwork.core.profile import save_profile
from clockwork.frontend.grpc_server import start_grpc
from clockwork.frontend.http_server import start_http
from clockwork.frontend.metrics import ServingMetrics
from clockwork.frontend.server import ControllerModelServer
from clockwork.models.model_import import import_model
from clockwork.models.problems import RepositoryProblems
from clockwork.models.repository import ModelRepository
from clockwork.service import ControllerService, WorkerService
from clockwork.service.bench_cluster import free_ports
from clockwork.service.observers import attach_observer
from clockwork.worker.assembly import torch_setup
from clockwork.worker.profiler import profile_model

from support.own_models import NETS, example, export_onnx, export_pt2, make_net
from support.own_models import VOCAB as NETS_VOCAB
from support.security import CONTROL_HEADERS, control_enabled
from support.triton_clients import http_client

T = TypeVar("T")
FORMATS = ("pt2", "onnx")
MODELS = [f"{net}-{fmt}" for net in NETS for fmt in FORMATS]
# float32 through different kernels (eager torch, the exported graph, ONNX Runtime's MLAS)
RTOL, ATOL = 1e-4, 1e-5
TIMEOUT_US = 5_000_000  # generous: a shared, noisy CPU


def build_repository(root: Path, files: Path) -> None:
    for net_name in NETS:
        net = make_net(net_name)
        pt2 = export_pt2(net_name, net, files / f"{net_name}.pt2")
        onnx = export_onnx(net_name, net, files / f"{net_name}.onnx")
        import_model(root, pt2, f"{net_name}-pt2", max_batch_size=4)
        import_model(root, onnx, f"{net_name}-onnx", max_batch_size=4)
    # a model whose file does not match its config: skipped, and explained
    import_model(root, files / "mlp.onnx", "broken", max_batch_size=4)
    pbtxt = root / "broken" / "config.pbtxt"
    pbtxt.write_text(pbtxt.read_text().replace("dims: [ 16 ]", "dims: [ 12 ]"))
    repo = ModelRepository(root)
    for name in MODELS:
        measured = profile_model(repo, name, runs=3, warmup=1, loads=2)
        generous = dataclasses.replace(  # CPU timings on a shared machine are noisy
            measured,
            load_ns=measured.load_ns * 3,
            exec_ns={b: t * 3 for b, t in measured.exec_ns.items()},
        )
        save_profile(generous, root / name / f"profile-{generous.device_kind}.json")


class Stack:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.http_port, self.grpc_port = free_ports(2)
        self.run(self._start())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    async def _start(self) -> None:
        devices, infos = torch_setup("w0", self.root, "cpu")
        self.served = sorted(i.name for i in infos)
        self.worker = WorkerService("w0", devices, infos)
        await self.worker.start("127.0.0.1", 0)
        self.ctrl = ControllerService(
            make_policy("clockwork"),
            [("127.0.0.1", self.worker.port)],
            ping_interval_s=0.2,
            silence_pings=10,
            connect_backoff_s=(0.02, 0.2),
        )
        metrics = ServingMetrics()
        attach_observer(self.ctrl, metrics)
        self.server = ControllerModelServer(self.ctrl, metrics, [*MODELS, "broken"])
        self.server.availability.broken = RepositoryProblems(self.root).why_broken
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
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("repo")
    build_repository(root, tmp_path_factory.mktemp("files"))
    s = Stack(root)
    try:
        yield s
    finally:
        s.close()


def expected(net_name: str, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        out: np.ndarray = make_net(net_name)(x).numpy()
        return out


def test_the_broken_model_is_skipped_and_the_others_served(stack: Stack) -> None:
    assert stack.served == sorted(MODELS)


@pytest.mark.parametrize("model", MODELS)
def test_http_answers_equal_eager_torch(stack: Stack, model: str) -> None:
    net_name, fmt = model.rsplit("-", 1)
    with http_client(f"127.0.0.1:{stack.http_port}") as client:
        meta = client.get_model_metadata(model)
        assert meta["platform"] == ("torch_export" if fmt == "pt2" else "onnxruntime_onnx")
        (inp,) = meta["inputs"]
        (out,) = meta["outputs"]
        x = example(net_name, 3, seed=11)
        tensor = th.InferInput(inp["name"], list(x.shape), inp["datatype"])
        tensor.set_data_from_numpy(x.numpy(), binary_data=True)
        result = client.infer(model, [tensor], timeout=TIMEOUT_US)
        np.testing.assert_allclose(
            result.as_numpy(out["name"]), expected(net_name, x), rtol=RTOL, atol=ATOL
        )


def test_grpc_answers_equal_eager_torch(stack: Stack) -> None:
    client = tg.InferenceServerClient(f"127.0.0.1:{stack.grpc_port}")
    try:
        for model in ("encoder-onnx", "conv-pt2"):
            net_name = model.rsplit("-", 1)[0]
            meta = client.get_model_metadata(model, as_json=True)
            x = example(net_name, 2, seed=5)
            tensor = tg.InferInput(
                meta["inputs"][0]["name"], list(x.shape), meta["inputs"][0]["datatype"]
            )
            tensor.set_data_from_numpy(x.numpy())
            result = client.infer(model, [tensor], timeout=TIMEOUT_US)
            np.testing.assert_allclose(
                result.as_numpy(meta["outputs"][0]["name"]),
                expected(net_name, x),
                rtol=RTOL,
                atol=ATOL,
            )
    finally:
        client.close()


def test_loading_the_broken_model_says_why(stack: Stack) -> None:
    # the check runs in a child process that imports torch and reads the file: seconds on a
    # busy machine, past tritonclient's usual 10 s network timeout at worst
    client = th.InferenceServerClient(
        f"127.0.0.1:{stack.http_port}", network_timeout=120, connection_timeout=120
    )
    try:
        with pytest.raises(InferenceServerException) as caught:
            client.load_model("broken", headers=CONTROL_HEADERS)
        assert caught.value.status() == "400"
        message = caught.value.message()
        assert "broken/1/model.onnx" in message and "[12] in the config" in message
        index = {m["name"]: m for m in client.get_model_repository_index()}
        assert "[12] in the config" in index["broken"]["reason"]
        # a name that is nowhere stays unknown
        with pytest.raises(InferenceServerException) as unknown:
            client.load_model("nowhere", headers=CONTROL_HEADERS)
        assert unknown.value.status() == "404"
    finally:
        client.close()
        client.close = lambda: None  # (see support.triton_clients)


@pytest.mark.parametrize("model", ["encoder-pt2", "encoder-onnx"])
def test_token_ids_past_the_embedding_are_refused_at_the_door(stack: Stack, model: str) -> None:
    with http_client(f"127.0.0.1:{stack.http_port}") as client:
        meta = client.get_model_config(model)
        for bad in (NETS_VOCAB, -1):
            x = example("encoder", 2, seed=3)
            x[1, 4] = bad
            tensor = th.InferInput("tokens", list(x.shape), "INT64")
            tensor.set_data_from_numpy(x.numpy(), binary_data=True)
            with pytest.raises(InferenceServerException) as caught:
                client.infer(model, [tensor], timeout=TIMEOUT_US)
            assert caught.value.status() == "400"
            message = caught.value.message()
            assert "'tokens'" in message and f"[0, {NETS_VOCAB - 1}]" in message, message
            assert f"{'max' if bad > 0 else 'min'} {bad}" in message
        # the largest and smallest ids are served, and the server goes on answering
        x = example("encoder", 2, seed=3)
        x[0, 0], x[1, 0] = NETS_VOCAB - 1, 0
        tensor = th.InferInput("tokens", list(x.shape), "INT64")
        tensor.set_data_from_numpy(x.numpy(), binary_data=True)
        result = client.infer(model, [tensor], timeout=TIMEOUT_US)
        out = meta["output"][0]["name"]
        np.testing.assert_allclose(
            result.as_numpy(out), expected("encoder", x), rtol=RTOL, atol=ATOL
        )


def test_grpc_refuses_token_ids_past_the_embedding(stack: Stack) -> None:
    client = tg.InferenceServerClient(f"127.0.0.1:{stack.grpc_port}")
    try:
        x = example("encoder", 1, seed=4)
        x[0, 2] = NETS_VOCAB + 7
        tensor = tg.InferInput("tokens", list(x.shape), "INT64")
        tensor.set_data_from_numpy(x.numpy())
        with pytest.raises(InferenceServerException) as caught:
            client.infer("encoder-onnx", [tensor], timeout=TIMEOUT_US)
        assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert f"values must lie in [0, {NETS_VOCAB - 1}]" in caught.value.message()
    finally:
        client.close()
