"""The torch backend serving .pt2 and .onnx models from the paged weights cache."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from clockwork.core.errors import ConfigurationError
from clockwork.models.model_import import import_model
from clockwork.models.repository import ModelRepository
from clockwork.worker.backends.onnx_program import CPU_PROVIDER, CUDA_PROVIDER, onnx_providers
from clockwork.worker.backends.torch_backend import TorchBackend

from support.own_models import example, export_onnx, export_pt2, make_net

NAMES = ("conv-pt2", "conv-onnx")
# float32 through different kernels (eager torch, the exported graph, ONNX Runtime's MLAS)
RTOL, ATOL = 1e-4, 1e-5  # float32 through different kernels


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TorchBackend]:
    root = tmp_path_factory.mktemp("repo")
    files = tmp_path_factory.mktemp("files")
    net = make_net("conv")
    import_model(root, export_pt2("conv", net, files / "conv.pt2"), "conv-pt2", max_batch_size=4)
    import_model(root, export_onnx("conv", net, files / "conv.onnx"), "conv-onnx", max_batch_size=4)
    # small pages, so that a model spans several and tensors sit at offsets
    from clockwork.core.profile import DeviceKind

    # ONNX Runtime's weight-copying passes off: every weight it reads is a page
    b = TorchBackend(
        ModelRepository(root), "cpu", kind=DeviceKind("cpu", 4096, 64), onnx_in_place=True
    )
    yield b


def run(backend: TorchBackend, name: str, x: torch.Tensor) -> np.ndarray:
    config = backend.config(name)
    requests = [{config.inputs[0].name: x[i].numpy()} for i in range(len(x))]
    out = backend.infer(name, 4, requests).outputs
    assert len(out) == len(x)
    return np.stack([o[config.outputs[0].name] for o in out])


@pytest.mark.parametrize("name", NAMES)
def test_outputs_equal_eager_torch_and_weights_are_pages(backend: TorchBackend, name: str) -> None:
    x = example("conv", 3, seed=7)
    with torch.inference_mode():
        expected = make_net("conv")(x).numpy()
    backend.load(name)
    try:
        assert backend.cache.used_pages == backend.plan(name).num_pages > 1
        np.testing.assert_allclose(run(backend, name, x), expected, rtol=RTOL, atol=ATOL)
        pool = backend.cache.pool
        lo, hi = pool.data_ptr(), pool.data_ptr() + pool.numel()
        views, _ = backend._loaded[name]
        assert views and all(lo <= t.data_ptr() < hi for t in views.values() if t.numel())
        # the program computes with the pages themselves: change one and the output changes
        weight = max(views.values(), key=lambda t: t.numel())
        saved = weight.clone()
        weight.mul_(3.0)
        changed = run(backend, name, x)
        weight.copy_(saved)
        assert not np.allclose(changed, expected, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(run(backend, name, x), expected, rtol=RTOL, atol=ATOL)
    finally:
        backend.evict(name)
    assert backend.cache.used_pages == 0


def test_load_evict_load_on_other_pages(backend: TorchBackend) -> None:
    x = example("conv", 2, seed=3)
    backend.load("conv-pt2")
    backend.load("conv-onnx")
    first = run(backend, "conv-onnx", x)
    pages = backend.cache.pages_of("conv-onnx")
    backend.evict("conv-pt2")
    backend.evict("conv-onnx")
    backend.load("conv-onnx")  # the pt2 model's pages are free now: placed differently
    try:
        assert backend.cache.pages_of("conv-onnx") != pages
        np.testing.assert_array_equal(run(backend, "conv-onnx", x), first)
    finally:
        backend.evict("conv-onnx")


def test_provider_selection() -> None:
    both = [CUDA_PROVIDER, CPU_PROVIDER]
    assert onnx_providers(torch.device("cpu"), both) == [CPU_PROVIDER]
    assert onnx_providers(torch.device("cuda", 1), both) == [
        (CUDA_PROVIDER, {"device_id": "1"}),
        CPU_PROVIDER,
    ]
    assert onnx_providers(torch.device("cuda"), both)[0] == (CUDA_PROVIDER, {"device_id": "0"})
    with pytest.raises(ConfigurationError, match="onnxruntime-gpu"):
        onnx_providers(torch.device("cuda", 0), [CPU_PROVIDER])


def test_no_module_copy_per_load(backend: TorchBackend) -> None:
    # a .pt2 model binds its own program's module once: loads make no new module
    backend.load("conv-pt2")
    _, first = backend._loaded["conv-pt2"]
    backend.evict("conv-pt2")
    backend.load("conv-pt2")
    _, second = backend._loaded["conv-pt2"]
    backend.evict("conv-pt2")
    assert first.runner.module is second.runner.module  # type: ignore[attr-defined]


def test_by_default_onnx_runtime_may_copy_weights_but_answers_the_same(
    backend: TorchBackend,
) -> None:
    fast = TorchBackend(backend.repository, "cpu", models=["conv-onnx"])
    assert not fast.onnx_in_place
    x = example("conv", 3, seed=9)
    fast.load("conv-onnx")
    np.testing.assert_allclose(
        run(fast, "conv-onnx", x), run_loaded(backend, x), rtol=RTOL, atol=ATOL
    )
    fast.evict("conv-onnx")


def run_loaded(backend: TorchBackend, x: torch.Tensor) -> np.ndarray:
    backend.load("conv-onnx")
    try:
        return run(backend, "conv-onnx", x)
    finally:
        backend.evict("conv-onnx")
