"""Random action sequences against the worker rules: pages never overcommitted, every action
answered exactly once, nothing started outside its window."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from clockwork.core.actions import ActionResult, ActionStatus, EvictWeights, Infer, LoadWeights
from clockwork.core.ids import DeviceId
from clockwork.worker.device_state import DeviceState, Executor, Refused, Started, Wait, WorkerModel

D = DeviceId("w0", 0)
MODELS = {n: WorkerModel(n, p, (1, 2, 4)) for n, p in (("a", 3), ("b", 5), ("c", 2), ("d", 7))}

op = st.tuples(
    st.sampled_from(["load", "infer", "evict", "tick"]),
    st.sampled_from(sorted(MODELS)),
    st.integers(0, 50),  # earliest offset
    st.integers(0, 50),  # window length
    st.integers(1, 30),  # duration of the action if it starts
)


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(op, max_size=60), pages=st.integers(1, 15))
def test_random_sequences_keep_the_rules(
    ops: list[tuple[str, str, int, int, int]], pages: int
) -> None:
    s = DeviceState(D, pages, MODELS)
    now = 0
    running: dict[Executor, tuple[int, int]] = {}  # executor -> (began, ends at)
    results: list[ActionResult] = []
    sent: dict[int, LoadWeights | Infer | EvictWeights] = {}

    def step() -> None:
        for ex in Executor:
            if ex in running and running[ex][1] <= now:
                began, _ = running.pop(ex)
                results.append(s.finish(ex, began, now))
            while ex not in running:
                d = s.next(ex, now)
                if d is None or isinstance(d, Wait):
                    if isinstance(d, Wait):
                        assert d.until_ns > now
                    break
                if isinstance(d, Refused):
                    results.append(d.result)
                    continue
                assert isinstance(d, Started)
                a = d.action
                assert a.earliest_ns <= now <= a.latest_ns
                running[ex] = (now, now + durations[a.action_id])
        assert s.free_pages >= 0 and s.free_pages + s.used_pages() == pages

    durations: dict[int, int] = {}
    for aid, (kind, model, early, window, dur) in enumerate(ops, start=1):
        now += 1
        action: LoadWeights | Infer | EvictWeights | None = None
        if kind == "load":
            action = LoadWeights(aid, D, model, now + early, now + early + window, dur)
        elif kind == "infer":
            action = Infer(aid, D, model, 1, (aid,), now + early, now + early + window, dur)
        elif kind == "evict" and model not in {
            a.model
            for ex in running
            for a in [s.busy(ex)]
            if a is not None and isinstance(a, Infer)
        }:
            action = EvictWeights(aid, D, model)
        if action is not None:
            sent[aid] = action
            durations[aid] = dur
            r = s.receive(action, now)
            if r is not None:
                results.append(r)
        step()
        now += dur if kind == "tick" else 0
        step()
    # run everything out
    for _ in range(200):
        now += 10
        step()
    assert not running
    ids = [r.action_id for r in results]
    assert sorted(ids) == sorted(sent), "every action answered exactly once"
    for r in results:
        if r.status is ActionStatus.SUCCESS and not isinstance(sent[r.action_id], EvictWeights):
            a = sent[r.action_id]
            assert isinstance(a, LoadWeights | Infer)
            assert a.earliest_ns <= r.began_ns <= a.latest_ns
