"""The worker runtime: DeviceState driven in real time by executor threads over a backend.

Durations are a few ms; timing assertions are about order (never before ``earliest``, never two
inferences at once) rather than exact times, since the test machine is small and noisy.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
import pytest

from clockwork.core.actions import (
    Action,
    ActionResult,
    ActionStatus,
    EvictWeights,
    Infer,
    LoadWeights,
)
from clockwork.core.ids import DeviceId
from clockwork.core.profile import DeviceKind, Measurement, ModelProfile
from clockwork.worker.backends.base import Backend, BackendError, InferOutput, PhaseTimes
from clockwork.worker.backends.emulated import EmulatedBackend
from clockwork.worker.device_state import WorkerModel
from clockwork.worker.runtime import SHUTDOWN_DETAIL, WorkerRuntime

from support.units import MS

D = DeviceId("w0", 0)
D1 = DeviceId("w0", 1)
KIND = DeviceKind("test-kind", page_size_bytes=1000, cache_pages=10)
FAR = 10**18
Outputs = list[dict[str, npt.NDArray[np.generic]]]


def profile(
    name: str, pages: int = 4, load_ns: int = 3 * MS, exec_ms: float = 2.0, output_bytes: int = 40
) -> ModelProfile:
    return ModelProfile(
        model=name,
        device_kind=KIND.name,
        weights_bytes=pages * 1000,
        page_size_bytes=1000,
        weights_pages=pages,
        load_ns=load_ns,
        exec_ns={1: round(exec_ms * MS), 2: round(exec_ms * MS * 1.5)},
        input_bytes=12,
        output_bytes=output_bytes,
        measured=Measurement(by="test", where="test", how="made up"),
    )


def emulated(**profiles: ModelProfile) -> EmulatedBackend:
    return EmulatedBackend(
        KIND, profiles or {"a": profile("a"), "b": profile("b"), "c": profile("c")}
    )


class Collector:
    """on_result: keeps every result, lets a test wait for one."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.results: list[tuple[ActionResult, Outputs | None]] = []

    def __call__(self, result: ActionResult, outputs: Outputs | None) -> None:
        with self.cond:
            self.results.append((result, outputs))
            self.cond.notify_all()

    def _find(self, action_id: int) -> tuple[ActionResult, Outputs | None] | None:
        for r, o in self.results:
            if r.action_id == action_id:
                return r, o
        return None

    def wait(self, action_id: int, timeout_s: float = 5.0) -> ActionResult:
        return self.wait_outputs(action_id, timeout_s)[0]

    def wait_outputs(
        self, action_id: int, timeout_s: float = 5.0
    ) -> tuple[ActionResult, Outputs | None]:
        with self.cond:
            assert self.cond.wait_for(lambda: self._find(action_id) is not None, timeout_s), (
                f"no result for action {action_id}"
            )
            found = self._find(action_id)
            assert found is not None
            return found

    def has(self, action_id: int) -> bool:
        with self.cond:
            return self._find(action_id) is not None

    def counts(self) -> Counter[int]:
        with self.cond:
            return Counter(r.action_id for r, _ in self.results)


class FakeBackend:
    """Records every call in order; ``hooks[op]`` (op: load, infer, evict) runs inside the call
    and may block or raise."""

    name = "fake"

    def __init__(self, models: Mapping[str, WorkerModel] | None = None, pages: int = 10) -> None:
        self.kind = DeviceKind("fake", 1000, pages)
        self._models = dict(
            models or {"a": WorkerModel("a", 4, (1, 2)), "b": WorkerModel("b", 4, (1,))}
        )
        self.lock = threading.Lock()
        self.log: list[str] = []
        self.hooks: dict[str, Callable[[str], object]] = {}
        self.in_flight = Counter[str]()
        self.max_in_flight = Counter[str]()

    def _call(self, op: str, model: str) -> None:
        with self.lock:
            self.log.append(f"{op}-begin {model}")
            self.in_flight[op] += 1
            self.max_in_flight[op] = max(self.max_in_flight[op], self.in_flight[op])
        try:
            hook = self.hooks.get(op)
            if hook is not None:
                hook(model)
        finally:
            with self.lock:
                self.in_flight[op] -= 1
                self.log.append(f"{op}-end {model}")

    def models(self) -> Mapping[str, WorkerModel]:
        return self._models

    def load(self, model: str) -> PhaseTimes:
        self._call("load", model)
        return PhaseTimes(0, 1000, 0)

    def evict(self, model: str) -> None:
        self._call("evict", model)

    def infer(
        self, model: str, batch_size: int, inputs: Sequence[Mapping[str, npt.NDArray[np.generic]]]
    ) -> InferOutput:
        self._call("infer", model)
        return InferOutput([{"echo": np.asarray(len(i))} for i in inputs], PhaseTimes(11, 22, 33))

    def calls(self, op: str) -> list[str]:
        with self.lock:
            return [e for e in self.log if e.startswith(f"{op}-begin")]


class FakeClock:
    def __init__(self, t: int = 0) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def now() -> int:
    return time.monotonic_ns()


def load(
    aid: int, model: str, earliest: int = 0, latest: int = FAR, device: DeviceId = D
) -> LoadWeights:
    return LoadWeights(aid, device, model, earliest, latest, 3 * MS)


def infer(
    aid: int,
    model: str,
    earliest: int = 0,
    latest: int = FAR,
    batch: int = 1,
    requests: tuple[int, ...] | None = None,
    device: DeviceId = D,
) -> Infer:
    return Infer(
        aid,
        device,
        model,
        batch,
        requests if requests is not None else (aid,),
        earliest,
        latest,
        2 * MS,
    )


def evict(aid: int, model: str, device: DeviceId = D) -> EvictWeights:
    return EvictWeights(aid, device, model)


def runtime(backend: Backend, sink: Collector, **kw: int) -> WorkerRuntime:
    return WorkerRuntime([(D, backend)], sink, **kw)  # type: ignore[arg-type]


def loaded(rt: WorkerRuntime, sink: Collector, model: str, aid: int) -> None:
    rt.submit(load(aid, model))
    assert sink.wait(aid).status is ActionStatus.SUCCESS


def wait_until(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.001)


# --------------------------------------------------------------------- windows


def test_infer_starts_no_earlier_than_earliest_and_returns_outputs() -> None:
    sink = Collector()
    with runtime(emulated(), sink) as rt:
        loaded(rt, sink, "a", 1)
        starts = []
        for aid in range(2, 6):
            earliest = now() + 15 * MS
            rt.submit(infer(aid, "a", earliest=earliest, batch=2, requests=(7, 8)))
            r, outputs = sink.wait_outputs(aid)
            assert r.status is ActionStatus.SUCCESS, r
            assert r.received_ns < earliest <= r.began_ns < r.ended_ns
            assert r.exec_ns == 3 * MS
            assert outputs is not None and len(outputs) == 2
            assert outputs[0]["output"].shape == (10,)
            starts.append(r.began_ns - earliest)
        # loose: the spin makes starts land close to earliest; the machine is noisy
        assert sorted(starts)[len(starts) // 2] < 5 * MS


def test_infer_whose_latest_passed_while_queued_is_refused_without_running() -> None:
    backend = FakeBackend()
    release = threading.Event()
    backend.hooks["infer"] = lambda _m: release.wait(5)
    sink = Collector()
    with runtime(backend, sink) as rt:
        loaded(rt, sink, "a", 1)
        rt.submit(infer(2, "a"))
        wait_until(lambda: rt.state(D).running_infer == 2)
        rt.submit(infer(3, "a", latest=now() + 1 * MS))
        time.sleep(0.005)
        release.set()
        assert sink.wait(2).status is ActionStatus.SUCCESS
        r = sink.wait(3)
        assert r.status is ActionStatus.TOO_LATE
        assert r.began_ns == r.ended_ns and r.began_ns > r.received_ns
        rt.submit(infer(4, "a"))
        assert sink.wait(4).ok
    assert backend.calls("infer") == ["infer-begin a", "infer-begin a"]


def test_actions_start_in_order_of_earliest_not_of_arrival() -> None:
    backend = FakeBackend()
    sink = Collector()
    with runtime(backend, sink) as rt:
        loaded(rt, sink, "a", 1)
        t = now()
        rt.submit(infer(2, "a", earliest=t + 30 * MS))
        rt.submit(infer(3, "a", earliest=t + 10 * MS))  # later, yet earlier earliest
        r2, r3 = sink.wait(2), sink.wait(3)
        assert r3.ended_ns <= r2.began_ns
        assert r3.began_ns >= t + 10 * MS and r2.began_ns >= t + 30 * MS


# --------------------------------------------------------------------- executors


def test_inferences_never_overlap_while_a_load_runs_beside_them() -> None:
    sink = Collector()
    backend = emulated(a=profile("a", exec_ms=4.0), b=profile("b", load_ns=30 * MS))
    with runtime(backend, sink) as rt:
        loaded(rt, sink, "a", 1)
        rt.submit(load(2, "b"))
        for aid in range(3, 9):
            rt.submit(infer(aid, "a"))
        infers = sorted((sink.wait(aid) for aid in range(3, 9)), key=lambda r: r.began_ns)
        ld = sink.wait(2)
    assert all(r.ok for r in infers) and ld.ok
    for first, second in itertools.pairwise(infers):
        assert second.began_ns >= first.ended_ns
    assert any(r.began_ns < ld.ended_ns and ld.began_ns < r.ended_ns for r in infers)


def test_load_really_runs_concurrently_with_inference_and_infers_one_at_a_time() -> None:
    # each side blocks until the other has begun: serialised executors would time out
    backend = FakeBackend()
    load_running, infer_running = threading.Event(), threading.Event()
    met: list[bool] = []

    def on_load(model: str) -> None:
        if model == "b":
            load_running.set()
            met.append(infer_running.wait(5))

    def on_infer(_model: str) -> None:
        infer_running.set()
        met.append(load_running.wait(5))
        time.sleep(0.001)

    sink = Collector()
    with runtime(backend, sink) as rt:
        loaded(rt, sink, "a", 1)
        backend.hooks["load"] = on_load
        backend.hooks["infer"] = on_infer
        for aid in range(2, 6):
            rt.submit(infer(aid, "a"))
        rt.submit(load(6, "b"))
        assert all(sink.wait(aid).ok for aid in range(2, 7))
    assert met and all(met)
    assert backend.max_in_flight["infer"] == 1 and backend.max_in_flight["load"] == 1


# --------------------------------------------------------------------- pages and evictions


def test_load_until_insufficient_pages_then_evict_and_reload() -> None:
    sink = Collector()
    backend = emulated()  # a, b, c: 4 pages each of 10
    with runtime(backend, sink) as rt:
        loaded(rt, sink, "a", 1)
        loaded(rt, sink, "b", 2)
        rt.submit(load(3, "c"))
        r = sink.wait(3)
        assert r.status is ActionStatus.INSUFFICIENT_PAGES and "2 free" in r.detail
        rt.submit(load(4, "a"))
        assert sink.wait(4).status is ActionStatus.WEIGHTS_ALREADY_PRESENT
        rt.submit(evict(5, "a"))
        assert sink.has(5), "an eviction is answered before submit returns"
        assert sink.wait(5).ok
        assert rt.state(D).free_pages == 6
        loaded(rt, sink, "c", 6)
        s = rt.state(D)
        assert sorted(s.resident_models) == ["b", "c"] and s.free_pages == 2
        assert backend.loaded() == {"b", "c"}
        rt.submit(evict(7, "a"))
        assert sink.wait(7).status is ActionStatus.WEIGHTS_NOT_PRESENT


def test_evict_of_a_model_whose_infer_is_queued_fails_that_infer() -> None:
    sink = Collector()
    backend = emulated()
    with runtime(backend, sink) as rt:
        loaded(rt, sink, "a", 1)
        rt.submit(infer(2, "a", earliest=now() + 20 * MS))
        rt.submit(evict(3, "a"))
        assert sink.wait(3).ok
        r = sink.wait(2)
        assert r.status is ActionStatus.WEIGHTS_NOT_PRESENT
        assert backend.loaded() == frozenset()


def test_evict_during_a_running_infer_is_deferred_in_the_backend() -> None:
    backend = FakeBackend()
    release = threading.Event()
    backend.hooks["infer"] = lambda _m: release.wait(5)
    sink = Collector()
    with runtime(backend, sink) as rt:
        loaded(rt, sink, "a", 1)
        rt.submit(infer(2, "a"))
        wait_until(lambda: rt.state(D).running_infer == 2)
        rt.submit(evict(3, "a"))
        assert sink.has(3) and sink.wait(3).ok  # answered at once
        assert rt.state(D).free_pages == 10
        rt.submit(load(4, "b"))  # may not copy before the backend freed a's pages
        time.sleep(0.005)
        assert backend.calls("evict") == [] and backend.calls("load") == ["load-begin a"]
        release.set()
        r = sink.wait(2)
        assert r.status is ActionStatus.WEIGHTS_CHANGED_DURING_EXEC
        assert sink.wait(4).ok
    log = backend.log
    assert log.index("infer-end a") < log.index("evict-begin a") < log.index("load-begin b")


def test_evict_during_a_running_load_ends_it_changed_and_frees_the_backend() -> None:
    backend = FakeBackend()
    release = threading.Event()
    backend.hooks["load"] = lambda _m: release.wait(5)
    sink = Collector()
    with runtime(backend, sink) as rt:
        rt.submit(load(1, "a"))
        wait_until(lambda: rt.state(D).running_load == 1)
        rt.submit(evict(2, "a"))
        assert sink.wait(2).ok
        release.set()
        assert sink.wait(1).status is ActionStatus.WEIGHTS_CHANGED_DURING_EXEC
        assert rt.state(D).resident_models == () and rt.state(D).free_pages == 10
    assert backend.log == ["load-begin a", "load-end a", "evict-begin a", "evict-end a"]


# --------------------------------------------------------------------- failures


def test_a_backend_that_raises_gives_execution_error_and_the_worker_goes_on() -> None:
    backend = FakeBackend()
    sink = Collector()
    fail = {"infer": 1, "load": 1}

    def failing(op: str) -> Callable[[str], None]:
        def hook(model: str) -> None:
            if fail[op] > 0:
                fail[op] -= 1
                raise BackendError(f"{op} of {model} broke")

        return hook

    backend.hooks["infer"] = failing("infer")
    backend.hooks["load"] = failing("load")
    with runtime(backend, sink) as rt:
        rt.submit(load(1, "a"))
        r = sink.wait(1)
        assert r.status is ActionStatus.EXECUTION_ERROR and r.detail == "load of a broke"
        assert rt.state(D).free_pages == 10  # a failed load leaves nothing behind
        loaded(rt, sink, "a", 2)
        rt.submit(infer(3, "a"))
        rt.submit(infer(4, "a"))
        r3, out3 = sink.wait_outputs(3)
        assert r3.status is ActionStatus.EXECUTION_ERROR and r3.detail == "infer of a broke"
        assert out3 is None
        r4, out4 = sink.wait_outputs(4)
        assert r4.ok and out4 is not None and len(out4) == 1
        assert (r4.input_copy_ns, r4.exec_ns, r4.output_copy_ns) == (11, 22, 33)


def test_any_exception_and_wrong_output_count_are_execution_errors() -> None:
    backend = FakeBackend()
    sink = Collector()

    def boom(_model: str) -> None:
        raise ZeroDivisionError

    with runtime(backend, sink) as rt:
        loaded(rt, sink, "a", 1)
        backend.hooks["infer"] = boom
        rt.submit(infer(2, "a"))
        r = sink.wait(2)
        assert r.status is ActionStatus.EXECUTION_ERROR and r.detail == "ZeroDivisionError"
        del backend.hooks["infer"]
        original = backend.infer

        def short(
            model: str, batch_size: int, inputs: Sequence[Mapping[str, npt.NDArray[np.generic]]]
        ) -> InferOutput:
            return InferOutput([], original(model, batch_size, inputs).times)

        backend.infer = short  # type: ignore[method-assign]
        rt.submit(infer(3, "a"))
        r = sink.wait(3)
        assert r.status is ActionStatus.EXECUTION_ERROR and "0 outputs for 1" in r.detail


def test_on_result_raising_does_not_stop_the_worker() -> None:
    sink = Collector()
    calls = []

    def on_result(result: ActionResult, outputs: Outputs | None) -> None:
        calls.append(result.action_id)
        if len(calls) == 1:
            raise RuntimeError("consumer bug")
        sink(result, outputs)

    with WorkerRuntime([(D, FakeBackend())], on_result) as rt:
        rt.submit(load(1, "a"))
        wait_until(lambda: calls == [1])
        rt.submit(infer(2, "a"))
        assert sink.wait(2).ok


# --------------------------------------------------------------------- answered at once


@pytest.mark.parametrize(
    ("action", "inputs", "status"),
    [
        (infer(1, "zzz"), None, ActionStatus.UNKNOWN_MODEL),
        (load(1, "zzz"), None, ActionStatus.UNKNOWN_MODEL),
        (evict(1, "zzz"), None, ActionStatus.UNKNOWN_MODEL),
        (infer(1, "a", batch=3), None, ActionStatus.UNSUPPORTED_BATCH_SIZE),
        (infer(1, "a", requests=(1, 2, 3), batch=2), None, ActionStatus.INVALID_INPUT),
        (infer(1, "a", requests=(1, 2), batch=2), [{}], ActionStatus.INVALID_INPUT),
        (load(1, "a"), [{}], ActionStatus.INVALID_INPUT),
        (infer(1, "a", earliest=10, latest=5), None, ActionStatus.INVALID_WINDOW),
        (infer(1, "a", device=DeviceId("w9", 0)), None, ActionStatus.UNKNOWN_DEVICE),
        (evict(1, "a"), None, ActionStatus.WEIGHTS_NOT_PRESENT),
    ],
)
def test_invalid_actions_are_answered_at_once(
    action: Action, inputs: list[dict[str, object]], status: ActionStatus
) -> None:
    backend = FakeBackend()
    sink = Collector()
    with runtime(backend, sink) as rt:
        rt.submit(action, inputs)  # type: ignore[arg-type]
        assert sink.has(1), "answered before submit returned"
        r = sink.wait(1)
        assert r.status is status and r.received_ns == r.began_ns == r.ended_ns
        assert rt.state(D).unanswered == 0
    assert backend.log == []
    assert sink.counts() == {1: 1}


def test_an_earliest_at_the_end_of_time_does_not_break_the_executor() -> None:
    sink = Collector()
    end = 2**63 - 1  # from a clock at 0, a wait longer than threading.TIMEOUT_MAX
    with WorkerRuntime([(D, FakeBackend())], sink, FakeClock(0), spin_ns=0) as rt:
        rt.submit(load(1, "a", earliest=end, latest=end))
        rt.submit(infer(2, "a", earliest=end, latest=end))
        time.sleep(0.01)
        rt.submit(load(3, "a"))
        assert sink.wait(3).ok
        rt.submit(infer(4, "a"))
        assert sink.wait(4).ok
    assert sink.wait(1, 0).detail == sink.wait(2, 0).detail == SHUTDOWN_DETAIL


def test_a_pending_action_id_cannot_be_reused() -> None:
    sink = Collector()
    with runtime(FakeBackend(), sink) as rt:
        loaded(rt, sink, "a", 1)
        rt.submit(infer(2, "a", earliest=now() + 10**10))
        rt.submit(infer(2, "a"))
        r = sink.wait(2)
        assert r.status is ActionStatus.INVALID_INPUT and "unanswered" in r.detail
    assert sink.counts()[2] == 2  # the duplicate, then the queued one on close


# --------------------------------------------------------------------- shutdown and counting


def test_close_answers_everything_exactly_once() -> None:
    backend = FakeBackend()
    release = threading.Event()
    backend.hooks["infer"] = lambda _m: release.wait(5)
    sink = Collector()
    rt = runtime(backend, sink)
    loaded(rt, sink, "a", 1)
    rt.submit(infer(2, "a"))
    wait_until(lambda: rt.state(D).running_infer == 2)
    far = now() + 10**10
    for aid in range(3, 8):
        rt.submit(infer(aid, "a", earliest=far))
    rt.submit(load(8, "b", earliest=far))
    assert rt.state(D).unanswered == 7
    threading.Timer(0.02, release.set).start()
    rt.close()
    assert sink.wait(2, 0).ok  # the running action finished and was reported
    for aid in range(3, 9):
        r = sink.wait(aid, 0)
        assert r.status is ActionStatus.EXECUTION_ERROR and r.detail == SHUTDOWN_DETAIL
    rt.submit(infer(9, "a"))
    r = sink.wait(9, 0)
    assert r.status is ActionStatus.EXECUTION_ERROR and r.detail == SHUTDOWN_DETAIL
    rt.close()  # idempotent
    assert sink.counts() == dict.fromkeys(range(1, 10), 1)
    assert backend.calls("infer") == ["infer-begin a"]
    assert not any(
        t.is_alive() for t in threading.enumerate() if t.name.startswith("clockwork-w0/0")
    )


def test_many_actions_from_many_threads_each_get_one_answer() -> None:
    models = {m: profile(m, pages=3, load_ns=MS // 2, exec_ms=0.3) for m in "abcd"}
    sink = Collector()
    devices: list[tuple[DeviceId, Backend]] = [
        (D, EmulatedBackend(KIND, models)),
        (D1, EmulatedBackend(KIND, models)),
    ]
    rt = WorkerRuntime(devices, sink)
    submitted: list[int] = []
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        for i in range(60):
            aid = seed * 1000 + i
            device = rng.choice([D, D1])
            model = rng.choice("abcde")
            t = now()
            choices: list[Action] = [
                load(aid, model, earliest=t + rng.randrange(0, 3 * MS), device=device),
                evict(aid, model, device=device),
                infer(
                    aid,
                    model,
                    earliest=t + rng.randrange(0, 5 * MS),
                    latest=t + rng.randrange(0, 20 * MS),
                    device=device,
                ),
                infer(aid, model, device=device),
            ]
            action = rng.choice(choices)
            with lock:
                submitted.append(aid)
            rt.submit(action)
            time.sleep(rng.random() * 0.0005)

    clients = [threading.Thread(target=client, args=(s,)) for s in (1, 2, 3)]
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    time.sleep(0.01)
    rt.close()
    counts = sink.counts()
    assert sorted(counts) == sorted(submitted) and set(counts.values()) == {1}
    statuses = Counter(r.status for r, _ in sink.results)
    assert statuses[ActionStatus.SUCCESS] > 0 and statuses[ActionStatus.UNKNOWN_MODEL] > 0
    for device in (D, D1):
        s = rt.state(device)
        backend = rt.backend(device)
        assert isinstance(backend, EmulatedBackend)
        assert set(s.resident_models) <= backend.loaded()
        assert s.free_pages == 10 - 3 * len(backend.loaded())


# --------------------------------------------------------------------- fake clock


def test_fake_clock_drives_the_windows() -> None:
    clock = FakeClock(1000)
    backend = FakeBackend()
    sink = Collector()
    with WorkerRuntime([(D, backend)], sink, clock, spin_ns=0) as rt:
        rt.submit(load(1, "a"))
        r = sink.wait(1)
        assert (r.received_ns, r.began_ns, r.ended_ns, r.exec_ns) == (1000, 1000, 1000, 1000)
        rt.submit(infer(2, "a", earliest=10**10, latest=10**10 + 50))
        rt.submit(infer(3, "a", earliest=10**10 + 10, latest=10**10 + 20))
        time.sleep(0.02)
        assert backend.calls("infer") == [] and not sink.has(2)
        clock.t = 10**10 + 15
        rt.wake()
        r2, r3 = sink.wait(2), sink.wait(3)
        assert r2.ok and (r2.received_ns, r2.began_ns, r2.ended_ns) == (1000, clock.t, clock.t)
        assert r3.ok and r3.began_ns == clock.t  # the order is earliest's, not arrival's
        clock.t = 10**10 + 100
        rt.submit(infer(4, "a", earliest=0, latest=10**10 + 99))
        assert sink.wait(4).status is ActionStatus.TOO_LATE
    assert len(backend.calls("infer")) == 2


def test_constructor_checks() -> None:
    sink = Collector()
    with pytest.raises(ValueError, match="twice"):
        WorkerRuntime([(D, FakeBackend()), (D, FakeBackend())], sink)
    with pytest.raises(ValueError, match="spin_ns"):
        WorkerRuntime([(D, FakeBackend())], sink, spin_ns=-1)
