"""The request and action logs give back, column by column, exactly the rows appended."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from clockwork.core.actions import EvictWeights, Infer, LoadWeights
from clockwork.core.ids import DeviceId
from clockwork.telemetry.records import ActionLog, RequestLog

I64 = st.integers(-(2**63), 2**63 - 1)
ROWS = st.lists(
    st.tuples(
        I64,
        st.sampled_from(["a", "b", "c"]),
        I64,
        I64,
        I64,
        st.sampled_from(["SUCCESS", "LATE"]),
        I64,
        I64,
        st.booleans(),
    ),
    max_size=40,
)


@given(rows=ROWS)
def test_request_log_round_trip(
    rows: list[tuple[int, str, int, int, int, str, int, int, bool]],
) -> None:
    log = RequestLog()
    for row in rows:
        log.append(*row)
    assert len(log) == len(rows)
    t = log.table()
    assert len(t) == len(rows)
    for i, (rid, model, arr, dl, resp, status, b, aid, cold) in enumerate(rows):
        assert (
            t.request_id[i],
            t.arrival_ns[i],
            t.deadline_ns[i],
            t.response_ns[i],
            t.batch_size[i],
            t.action_id[i],
            t.cold_start[i],
        ) == (rid, arr, dl, resp, b, aid, int(cold))
        assert t.model_names[t.model[i]] == model
        assert t.status_names[t.status[i]] == status
    for col in (t.request_id, t.model, t.status, t.cold_start):
        assert col.dtype == np.int64 and col.flags.c_contiguous


def test_a_table_is_a_copy_the_log_grows_on() -> None:
    log = RequestLog()
    log.append(1, "m", 0, 10, 5, "SUCCESS", 1, 7, False)
    first = log.table()
    log.append(2, "m", 1, 11, 6, "LATE", 2, 8, True)
    assert list(first.request_id) == [1]
    assert list(log.table().request_id) == [1, 2]


def test_append_action_matches_append_for_every_kind() -> None:
    dev = DeviceId("w0", 1)
    actions: list[LoadWeights | Infer | EvictWeights] = [
        LoadWeights(1, dev, "m", 100, 200, 30),
        Infer(2, dev, "m", 8, (5, 6, 7), 110, 210, 40),
        EvictWeights(3, dev, "m"),
    ]
    by_action, by_row = ActionLog(), ActionLog()
    for action in actions:
        by_action.append_action(action, 150, 160, 170, 9, "SUCCESS", origin_ns=50)
    by_row.append(1, "LoadWeights", "w0/1", "m", 0, 0, 100, 50, 150, 30, 160, 170, 9, "SUCCESS")
    by_row.append(2, "Infer", "w0/1", "m", 8, 3, 100, 60, 160, 40, 160, 170, 9, "SUCCESS")
    by_row.append(3, "EvictWeights", "w0/1", "m", 0, 0, 100, 100, 100, 0, 160, 170, 0, "SUCCESS")
    a, b = by_action.table(), by_row.table()
    assert len(a) == len(b) == 3
    for name in (
        "action_id",
        "kind",
        "device",
        "model",
        "batch_size",
        "requests",
        "sent_ns",
        "earliest_ns",
        "latest_ns",
        "expected_ns",
        "began_ns",
        "ended_ns",
        "actual_ns",
        "status",
    ):
        assert list(getattr(a, name)) == list(getattr(b, name)), name
    assert a.kind_names == b.kind_names and a.device_names == b.device_names
