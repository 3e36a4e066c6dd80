"""The emulated backend: profiled durations, seeded noise, its own record of loaded models."""

from __future__ import annotations

import time

import numpy as np
import pytest

from clockwork.core.profile import DeviceKind, Measurement, ModelProfile
from clockwork.worker.backends.base import Backend, BackendError
from clockwork.worker.backends.emulated import EmulatedBackend
from clockwork.worker.device_state import WorkerModel

KIND = DeviceKind("test-kind", page_size_bytes=1000, cache_pages=10)


def profile(
    name: str,
    pages: int = 3,
    load_ns: int = 7_000_000,
    exec_ns: dict[int, int] | None = None,
    output_bytes: int = 40,
    page_size: int = 1000,
) -> ModelProfile:
    return ModelProfile(
        model=name,
        device_kind=KIND.name,
        weights_bytes=pages * page_size - 1,
        page_size_bytes=page_size,
        weights_pages=pages,
        load_ns=load_ns,
        exec_ns=exec_ns or {1: 2_000_000, 4: 5_000_000},
        input_bytes=12,
        output_bytes=output_bytes,
        measured=Measurement(by="test", where="test", how="made up"),
    )


class FakeSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def backend(
    sleep: FakeSleep | None = None, seed: int = 0, noise_sigma: float = 0.0
) -> EmulatedBackend:
    return EmulatedBackend(
        KIND,
        {"a": profile("a"), "b": profile("b", pages=5, load_ns=9_000)},
        seed=seed,
        noise_sigma=noise_sigma,
        sleep=sleep or FakeSleep(),
    )


def test_is_a_backend_and_lists_models_with_pages_for_its_kind() -> None:
    other_page_size = profile("c", pages=4, page_size=500)  # 1999 bytes -> 2 pages of 1000
    b: Backend = EmulatedBackend(KIND, {"a": profile("a"), "c": other_page_size}, sleep=FakeSleep())
    assert b.kind is KIND
    assert dict(b.models()) == {"a": WorkerModel("a", 3, (1, 4)), "c": WorkerModel("c", 2, (1, 4))}


def test_load_and_infer_take_the_profiled_durations() -> None:
    sleep = FakeSleep()
    b = backend(sleep)
    t = b.load("a")
    assert t.exec_ns == 7_000_000 and t.input_copy_ns == 0 and t.output_copy_ns == 0
    out = b.infer("a", 4, [{}, {}, {}])
    assert out.times.exec_ns == 5_000_000
    assert sleep.calls == [pytest.approx(0.007), pytest.approx(0.005)]
    assert len(out.outputs) == 3
    for o in out.outputs:
        assert o["output"].dtype == np.float32 and o["output"].shape == (10,)


def test_really_sleeps_by_default() -> None:
    b = EmulatedBackend(KIND, {"a": profile("a", load_ns=5_000_000)})
    t0 = time.monotonic_ns()
    b.load("a")
    assert time.monotonic_ns() - t0 >= 5_000_000


def test_noise_is_seeded_and_reported() -> None:
    def durations(seed: int, sigma: float) -> list[int]:
        sleep = FakeSleep()
        b = backend(sleep, seed=seed, noise_sigma=sigma)
        out = [b.load("a").exec_ns]
        out += [b.infer("a", 1, [{}]).times.exec_ns for _ in range(20)]
        assert [round(s * 1e9) for s in sleep.calls] == out
        return out

    assert durations(1, 0.1) == durations(1, 0.1)
    assert durations(1, 0.1) != durations(2, 0.1)
    noisy = durations(1, 0.1)
    assert len(set(noisy[1:])) > 1
    assert all(1_000_000 < d < 4_000_000 for d in noisy[1:])
    assert durations(1, 0.0)[1:] == [2_000_000] * 20
    with pytest.raises(ValueError, match="noise_sigma"):
        backend(noise_sigma=-1.0)


def test_keeps_its_own_record_and_refuses_what_it_cannot_do() -> None:
    b = backend()
    with pytest.raises(BackendError, match="unknown model"):
        b.load("zzz")
    with pytest.raises(BackendError, match="unknown model"):
        b.infer("zzz", 1, [{}])
    with pytest.raises(BackendError, match="not loaded"):
        b.infer("a", 1, [{}])
    with pytest.raises(BackendError, match="not loaded"):
        b.evict("a")
    b.load("a")
    assert b.loaded() == {"a"}
    with pytest.raises(BackendError, match="already loaded"):
        b.load("a")
    with pytest.raises(BackendError, match="batch size 2"):
        b.infer("a", 2, [{}])
    with pytest.raises(BackendError, match="exceed"):
        b.infer("a", 1, [{}, {}])
    b.evict("a")
    assert b.loaded() == frozenset()
    with pytest.raises(BackendError, match="not loaded"):
        b.infer("a", 1, [{}])
