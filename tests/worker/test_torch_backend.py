"""The torch backend on the CPU: a model run through the paged cache is the plain model.

Equality rule: against the plain module run on the *same padded batch*, outputs are exactly
equal (the same kernels on the same values; only where the weights live differs). Against the
plain module run on the unpadded requests they are allclose with a tight tolerance, since the
batch size may change which kernel torch picks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from clockwork.core.profile import DeviceKind
from clockwork.models.create import create_repository
from clockwork.models.packing import pack_tensors
from clockwork.models.profile_files import kind_file_name
from clockwork.models.repository import ModelRepository
from clockwork.worker.backends.base import BackendError
from clockwork.worker.backends.torch_backend import TorchBackend
from clockwork.worker.profiler import sample_inputs

TINY_TRANSFORMER: dict[str, Any] = {
    "vocab_size": 50,
    "seq_len": 8,
    "d_model": 16,
    "num_layers": 1,
    "num_heads": 2,
    "ffn_dim": 32,
    "num_classes": 3,
}
TINY_MOBILENET: dict[str, Any] = {"num_classes": 10, "resolution": 32, "width_mult": 0.25}
MOBILENET = "mobilenet_v2-0000"
TRANSFORMER = "transformer-0000"
# Small pages so that the tiny models take many pages and some tensors span several.
PAGE = 32 * 1024
KIND = DeviceKind("test-cpu", PAGE, 80)


@pytest.fixture(autouse=True, scope="module")
def _keep_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> ModelRepository:
    root = tmp_path_factory.mktemp("torch_backend") / "repo"
    create_repository(root, "mobilenet_v2", 1, seed=3, params=TINY_MOBILENET, batch_sizes=(1, 2, 4))
    create_repository(
        root,
        "transformer",
        1,
        seed=5,
        params=TINY_TRANSFORMER,
        batch_sizes=(1, 2, 4),
        share_weights=False,
    )
    return ModelRepository(root)


@pytest.fixture
def backend(repo: ModelRepository) -> TorchBackend:
    return TorchBackend(repo, "cpu", kind=KIND)


def plain_outputs(repo: ModelRepository, name: str, batch: np.ndarray) -> np.ndarray:
    module = repo.build_module(name, 1)
    with torch.inference_mode():
        out: np.ndarray = module(torch.from_numpy(batch)).numpy()
    return out


def stacked(requests: list[dict[str, Any]], key: str, pad_to: int) -> np.ndarray:
    rows = np.stack([r[key] for r in requests])
    pad = np.zeros((pad_to - len(rows), *rows.shape[1:]), dtype=rows.dtype)
    return np.concatenate([rows, pad])


@pytest.mark.parametrize(("name", "key"), [(MOBILENET, "input"), (TRANSFORMER, "input_ids")])
def test_paged_model_equals_plain_module(
    backend: TorchBackend, repo: ModelRepository, name: str, key: str
) -> None:
    backend.load(name)
    config = backend.config(name)
    requests = sample_inputs(config, 3, np.random.default_rng(1))
    result = backend.infer(name, 4, requests)
    assert len(result.outputs) == 3  # padding stripped
    got = np.stack([o["logits"] for o in result.outputs])
    assert got.dtype == np.float32
    assert got.shape == (3, config.outputs[0].shape[0])
    padded = plain_outputs(repo, name, stacked(requests, key, 4))
    np.testing.assert_array_equal(got, padded[:3])
    unpadded = plain_outputs(repo, name, stacked(requests, key, 3))
    np.testing.assert_allclose(got, unpadded, rtol=1e-5, atol=1e-6)
    assert result.times.exec_ns > 0


def test_pages_used_equal_the_pack_plan(backend: TorchBackend, repo: ModelRepository) -> None:
    plan = pack_tensors(repo.load_weights(MOBILENET, 1), PAGE)
    assert backend.plan(MOBILENET) == plan
    assert backend.models()[MOBILENET].pages == plan.num_pages
    assert any(p.pages > 1 for p in plan.placements)  # some tensors span pages
    assert backend.cache.used_pages == 0
    times = backend.load(MOBILENET)
    assert times.exec_ns > 0
    assert backend.cache.used_pages == plan.num_pages
    backend.load(TRANSFORMER)
    assert backend.cache.used_pages == plan.num_pages + backend.plan(TRANSFORMER).num_pages
    backend.evict(MOBILENET)
    assert backend.cache.used_pages == backend.plan(TRANSFORMER).num_pages
    assert backend.loaded() == (TRANSFORMER,)


def test_parameters_are_views_into_the_pool(backend: TorchBackend) -> None:
    backend.load(MOBILENET)
    pool = backend.cache.pool
    lo, hi = pool.data_ptr(), pool.data_ptr() + pool.numel()
    views, _ = backend._loaded[MOBILENET]
    assert views
    for t in views.values():
        assert t.numel() == 0 or lo <= t.data_ptr() < hi
    # the skeleton stays on the meta device: no per-load module
    skeletons = backend._skeletons.values()
    assert skeletons and all(p.is_meta for s in skeletons for p in s.parameters())


def test_load_evict_load_gives_the_same_outputs_on_other_pages(backend: TorchBackend) -> None:
    requests = sample_inputs(backend.config(MOBILENET), 2, np.random.default_rng(2))
    backend.load(MOBILENET)
    first_pages = backend.cache.pages_of(MOBILENET)
    before = backend.infer(MOBILENET, 2, requests).outputs
    backend.evict(MOBILENET)
    backend.load(TRANSFORMER)  # takes the lowest pages, so the reload lands elsewhere
    backend.load(MOBILENET)
    assert backend.cache.pages_of(MOBILENET) != first_pages
    after = backend.infer(MOBILENET, 2, requests).outputs
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a["logits"], b["logits"])


def test_single_request_at_batch_one(backend: TorchBackend) -> None:
    backend.load(TRANSFORMER)
    requests = sample_inputs(backend.config(TRANSFORMER), 1)
    out = backend.infer(TRANSFORMER, 1, requests)
    assert len(out.outputs) == 1
    assert set(out.outputs[0]) == {"logits"}


def image(shape: tuple[int, ...] = (3, 32, 32), dtype: Any = np.float32) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


@pytest.mark.parametrize(
    ("requests", "batch", "match"),
    [
        (
            [{"input": image((3, 32, 31))}],
            1,
            r"'input' has shape \[3, 32, 31\], expected \[3, 32, 32\]",
        ),
        ([{"input": image((1, 3, 32, 32))}], 1, r"'input' has shape"),
        ([{"input": image(dtype=np.float64)}], 1, r"'input' has dtype float64, expected float32"),
        ([{"input": image()}, {}], 2, r"request 1: input tensor 'input' is missing"),
        ([{"input": image(), "extra": image()}], 1, r"unknown input tensor 'extra'"),
        ([{"input": image()}] * 3, 2, r"3 requests exceed batch size 2 \(inputs input\)"),
        ([{"input": image()}], 3, r"batch size 3 is not one of \[1, 2, 4\]"),
        ([{"input": [[0.0]]}], 1, r"'input' is a list, not a numpy array"),
    ],
)
def test_bad_inputs_name_the_tensor(
    backend: TorchBackend, requests: list[dict[str, Any]], batch: int, match: str
) -> None:
    backend.load(MOBILENET)
    with pytest.raises(BackendError, match=match):
        backend.infer(MOBILENET, batch, requests)


def test_token_ids_out_of_range_are_refused(backend: TorchBackend) -> None:
    backend.load(TRANSFORMER)
    ids = np.zeros(8, dtype=np.int64)
    ids[3] = 50  # vocab_size is 50
    with pytest.raises(BackendError, match=r"'input_ids' has values outside \[0, 50\)"):
        backend.infer(TRANSFORMER, 1, [{"input_ids": ids}])
    with pytest.raises(BackendError, match=r"'input_ids' has dtype int32"):
        backend.infer(TRANSFORMER, 1, [{"input_ids": ids.astype(np.int32)}])


def test_action_errors(backend: TorchBackend) -> None:
    with pytest.raises(BackendError, match="not loaded"):
        backend.infer(MOBILENET, 1, [{"input": image()}])
    with pytest.raises(BackendError, match="not loaded"):
        backend.evict(MOBILENET)
    with pytest.raises(BackendError, match="not registered"):
        backend.load("nope")
    backend.load(MOBILENET)
    with pytest.raises(BackendError, match="already loaded"):
        backend.load(MOBILENET)


def test_load_that_does_not_fit_changes_nothing(repo: ModelRepository) -> None:
    need = pack_tensors(repo.load_weights(MOBILENET, 1), PAGE).num_pages
    small = TorchBackend(repo, "cpu", kind=DeviceKind("small", PAGE, need - 1))
    with pytest.raises(BackendError, match=f"needs {need} pages"):
        small.load(MOBILENET)
    assert small.cache.used_pages == 0
    assert small.loaded() == ()
    small.load(TRANSFORMER)


def test_default_kind_and_model_selection(repo: ModelRepository) -> None:
    b = TorchBackend(repo, models=[TRANSFORMER], threads=1)
    assert b.kind.name == "cpu"
    assert b.kind.page_size_bytes == 16 << 20
    assert set(b.models()) == {TRANSFORMER}
    assert b.models()[TRANSFORMER].pages == 1
    assert b.models()[TRANSFORMER].batch_sizes == (1, 2, 4)
    assert torch.get_num_threads() == 1
    assert kind_file_name("NVIDIA H200 (MIG 1g)") == "NVIDIA-H200-MIG-1g"


def test_cuda_without_cuda_is_a_clear_error(repo: ModelRepository) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(Exception, match="CUDA is not available"):
        TorchBackend(repo, "cuda:0")


@pytest.mark.gpu
def test_cuda_paged_model_matches_plain_module(repo: ModelRepository) -> None:
    b = TorchBackend(repo, "cuda:0", kind=DeviceKind("gpu-test", PAGE, 80))
    for name, key in [(MOBILENET, "input"), (TRANSFORMER, "input_ids")]:
        b.load(name)
        requests = sample_inputs(b.config(name), 3, np.random.default_rng(1))
        result = b.infer(name, 4, requests)
        got = np.stack([o["logits"] for o in result.outputs])
        module = repo.build_module(name, 1, copy=True).to("cuda:0")
        with torch.inference_mode():
            x = torch.from_numpy(stacked(requests, key, 4)).to("cuda:0")
            ref = module(x).cpu().numpy()[:3]
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
        assert (
            min(result.times.input_copy_ns, result.times.exec_ns, result.times.output_copy_ns) > 0
        )
        b.evict(name)


def test_a_batch_of_no_requests_is_a_probe_of_padding(backend: TorchBackend) -> None:
    backend.load(MOBILENET)
    out = backend.infer(MOBILENET, 1, [])
    assert out.outputs == [] and out.times.exec_ns > 0
