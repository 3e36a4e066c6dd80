from clockwork.core.actions import ActionStatus, EvictWeights, Infer, LoadWeights
from clockwork.core.ids import DeviceId
from clockwork.worker.device_state import (
    DeviceState,
    Executor,
    Refused,
    Started,
    Wait,
    WorkerModel,
)

D = DeviceId("w0", 0)


def state(pages: int = 10) -> DeviceState:
    return DeviceState(
        D,
        pages,
        {
            "a": WorkerModel("a", 4, (1, 2, 4)),
            "b": WorkerModel("b", 6, (1,)),
            "c": WorkerModel("c", 3, (1,)),
        },
    )


def load(aid: int, model: str, earliest: int = 0, latest: int = 10**12) -> LoadWeights:
    return LoadWeights(aid, D, model, earliest, latest, 100)


def infer(aid: int, model: str, earliest: int = 0, latest: int = 10**12, b: int = 1) -> Infer:
    return Infer(aid, D, model, b, (aid,), earliest, latest, 50)


def loaded(s: DeviceState, model: str, t: int = 0) -> None:
    assert s.receive(load(900 + len(s.weights), model), t) is None
    d = s.next(Executor.LOAD, t)
    assert isinstance(d, Started)
    assert s.finish(Executor.LOAD, t, t + 1).status is ActionStatus.SUCCESS


def test_too_early_waits_then_starts() -> None:
    s = state()
    loaded(s, "a")
    s.receive(infer(1, "a", earliest=100), 10)
    assert s.next(Executor.INFER, 10) == Wait(100)
    d = s.next(Executor.INFER, 100)
    assert isinstance(d, Started) and d.began_ns == 100


def test_too_late_refuses_without_running() -> None:
    s = state()
    loaded(s, "a")
    s.receive(infer(1, "a", latest=50), 10)
    d = s.next(Executor.INFER, 51)
    assert isinstance(d, Refused)
    assert d.result.status is ActionStatus.TOO_LATE
    assert d.result.received_ns == 10
    assert s.busy(Executor.INFER) is None


def test_one_inference_at_a_time_while_a_load_runs_beside_it() -> None:
    s = state()
    loaded(s, "a")
    s.receive(infer(1, "a"), 0)
    s.receive(infer(2, "a"), 0)
    s.receive(load(3, "c"), 0)
    assert isinstance(s.next(Executor.INFER, 0), Started)
    assert s.next(Executor.INFER, 0) is None  # busy: the second waits
    assert isinstance(s.next(Executor.LOAD, 0), Started)  # the load proceeds beside it
    r = s.finish(Executor.INFER, 0, 40)
    assert r.status is ActionStatus.SUCCESS and r.action_id == 1 and r.exec_ns == 40
    d = s.next(Executor.INFER, 40)
    assert isinstance(d, Started) and d.action.action_id == 2


def test_executor_takes_actions_in_order_of_earliest() -> None:
    s = state()
    loaded(s, "a")
    s.receive(infer(1, "a", earliest=30), 0)
    s.receive(infer(2, "a", earliest=20), 0)
    d = s.next(Executor.INFER, 30)
    assert isinstance(d, Started) and d.action.action_id == 2


def test_pages_exact_fit_no_fit_evict_and_reload() -> None:
    s = state(pages=10)
    loaded(s, "a")  # 4 pages
    loaded(s, "b")  # 6 pages: exact fit
    assert s.free_pages == 0
    s.receive(load(5, "c"), 0)
    d = s.next(Executor.LOAD, 0)
    assert isinstance(d, Refused) and d.result.status is ActionStatus.INSUFFICIENT_PAGES
    assert s.free_pages == 0 and set(s.resident_models()) == {"a", "b"}
    r = s.receive(EvictWeights(6, D, "a"), 1)
    assert r is not None and r.status is ActionStatus.SUCCESS
    assert s.free_pages == 4
    loaded(s, "c")
    assert s.free_pages == 1
    s.receive(load(7, "a"), 2)
    d = s.next(Executor.LOAD, 2)
    assert isinstance(d, Refused) and d.result.status is ActionStatus.INSUFFICIENT_PAGES


def test_evict_unknown_weights_and_double_load() -> None:
    s = state()
    r = s.receive(EvictWeights(1, D, "a"), 0)
    assert r is not None and r.status is ActionStatus.WEIGHTS_NOT_PRESENT
    loaded(s, "a")
    s.receive(load(2, "a"), 0)
    d = s.next(Executor.LOAD, 0)
    assert isinstance(d, Refused) and d.result.status is ActionStatus.WEIGHTS_ALREADY_PRESENT


def test_infer_without_weights() -> None:
    s = state()
    s.receive(infer(1, "a"), 0)
    d = s.next(Executor.INFER, 0)
    assert isinstance(d, Refused) and d.result.status is ActionStatus.WEIGHTS_NOT_PRESENT


def test_eviction_during_inference_is_a_version_conflict() -> None:
    s = state()
    loaded(s, "a")
    s.receive(infer(1, "a"), 0)
    assert isinstance(s.next(Executor.INFER, 0), Started)
    s.receive(EvictWeights(2, D, "a"), 5)
    loaded(s, "a", 6)  # reloaded under the running inference: a new version
    r = s.finish(Executor.INFER, 0, 10)
    assert r.status is ActionStatus.WEIGHTS_CHANGED_DURING_EXEC


def test_eviction_during_load_cancels_it() -> None:
    s = state()
    s.receive(load(1, "a"), 0)
    assert isinstance(s.next(Executor.LOAD, 0), Started)
    s.receive(EvictWeights(2, D, "a"), 5)
    assert s.free_pages == 10
    r = s.finish(Executor.LOAD, 0, 10)
    assert r.status is ActionStatus.WEIGHTS_CHANGED_DURING_EXEC
    assert s.resident_models() == () and s.free_pages == 10


def test_failed_load_frees_its_pages() -> None:
    s = state()
    s.receive(load(1, "a"), 0)
    s.next(Executor.LOAD, 0)
    r = s.finish(Executor.LOAD, 0, 10, error="copy failed")
    assert r.status is ActionStatus.EXECUTION_ERROR and r.detail == "copy failed"
    assert s.free_pages == 10


def test_invalid_actions_are_answered_on_arrival() -> None:
    s = state()
    cases = [
        (infer(1, "zzz"), ActionStatus.UNKNOWN_MODEL),
        (infer(2, "a", b=3), ActionStatus.UNSUPPORTED_BATCH_SIZE),
        (infer(3, "a", earliest=10, latest=5), ActionStatus.INVALID_WINDOW),
        (Infer(4, DeviceId("w9", 0), "a", 1, (4,), 0, 10, 1), ActionStatus.UNKNOWN_DEVICE),
        (Infer(5, D, "a", 1, (1, 2), 0, 10, 1), ActionStatus.INVALID_INPUT),
    ]
    for action, status in cases:
        r = s.receive(action, 0)
        assert r is not None and r.status is status, action
        assert r.detail
    assert s.queued(Executor.INFER) == 0
