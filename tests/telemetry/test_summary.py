from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clockwork.core.requests import ResponseStatus
from clockwork.telemetry.records import ActionLog, ActionTable, RequestLog, RequestTable
from clockwork.telemetry.summary import (
    RunInfo,
    choose_bucket_ns,
    format_attainment,
    nearest_rank,
    nearest_rank_indices,
    summarize,
    timeseries,
)

from support.units import MS, S

Tables = tuple[RequestTable, ActionTable]
InfoFn = Callable[..., RunInfo]


@pytest.fixture(scope="module")
def known(known_tables: Tables, make_info: InfoFn) -> dict[str, object]:
    return summarize(*known_tables, make_info())


def test_request_figures(known: dict[str, object]) -> None:
    assert known["requests"] == 25
    assert known["succeeded"] == 15
    assert known["late"] == 5
    assert known["slo_attainment"] == pytest.approx(0.6)
    assert known["slo_attainment_pct_str"] == "60.00%"
    assert known["offered_rps"] == pytest.approx(5.0)
    assert known["goodput_rps"] == pytest.approx(3.0)
    assert known["ideal_capacity_rps"] == 10.0
    assert known["goodput_fraction_of_ideal"] == pytest.approx(0.3)
    assert known["cold_starts"] == 4
    refused = known["refused"]
    assert isinstance(refused, dict)
    assert refused["OVERLOADED"] == 3
    assert refused["DEADLINE_INFEASIBLE"] == 2
    expected_keys = {s.name for s in ResponseStatus} - {"SUCCESS", "LATE"}
    assert set(refused) == expected_keys
    assert sum(refused.values()) == 5


def test_latency_nearest_rank(known: dict[str, object]) -> None:
    # the 15 successful latencies: 7 3 19 1 12 20 5 9 14 2 17 8 11 4 16 ms (no 6, 10, 13, 15, 18:
    # those are the late ones)
    lat = known["latency_ms"]
    assert isinstance(lat, dict)
    assert lat.pop("mean") == pytest.approx(148 / 15)
    assert lat == {
        "count": 15,
        "p50": 9.0,
        "p90": 19.0,
        "p99": 20.0,
        "p99.9": 20.0,
        "p99.99": 20.0,
        "max": 20.0,
    }
    # delivered latencies (successful and late) are exactly 1..20 ms
    assert known["delivered_latency_ms"] == {
        "count": 20,
        "p50": 10.0,
        "p90": 18.0,
        "p99": 20.0,
        "p99.9": 20.0,
        "p99.99": 20.0,
        "max": 20.0,
        "mean": 10.5,
    }


def test_action_figures(known: dict[str, object]) -> None:
    assert known["infers"] == 6
    assert known["loads"] == 2
    assert known["evictions"] == 1
    assert known["batch_sizes"] == {"1": 2, "2": 1, "4": 3}
    assert list(known["batch_sizes"]) == ["1", "2", "4"]
    assert known["actions_by_status"] == {
        "Infer": {"SUCCESS": 6, "TOO_LATE": 1},
        "LoadWeights": {"SUCCESS": 2, "INSUFFICIENT_PAGES": 1},
        "EvictWeights": {"SUCCESS": 1},
    }
    # 5 + 6 + 4 + 5.5 + 7 + 5 = 32.5 ms busy over 2 devices x 5 s
    assert known["device_utilisation"] == pytest.approx(32.5e-3 / 10.0)


def test_prediction_error(known: dict[str, object]) -> None:
    pe = known["prediction_error"]
    assert isinstance(pe, dict)
    infer = pe["Infer"]
    # errors -1, 0, 0, 0.5, 1, 2 ms (the TOO_LATE Infer is left out)
    assert infer["count"] == 6
    assert infer["p1"] == pytest.approx(-1.0)
    assert infer["p50"] == pytest.approx(0.0)
    assert infer["p99"] == pytest.approx(2.0)
    assert infer["p99.9"] == pytest.approx(2.0)
    assert infer["max"] == pytest.approx(2.0)
    assert infer["mean"] == pytest.approx(2.5 / 6)
    assert infer["frac_over"] == pytest.approx(0.5)
    load = pe["LoadWeights"]
    assert load["count"] == 2
    assert load["p1"] == pytest.approx(-0.1)
    assert load["p50"] == pytest.approx(-0.1)
    assert load["p99"] == pytest.approx(0.3)
    assert load["mean"] == pytest.approx(0.1)
    assert load["frac_over"] == pytest.approx(0.5)


def test_cost_and_run_fields(known: dict[str, object]) -> None:
    assert known["sim_wall_s"] == 0.5
    assert known["sim_requests_per_wall_s"] == pytest.approx(50.0)
    assert known["scheduler_cpu_us_per_request"] == pytest.approx(100.0)
    assert known["scheduler_requests_per_cpu_s"] == pytest.approx(10_000.0)
    assert known["policy"] == "clockwork"
    assert known["duration_s"] == 5.0
    assert (known["devices"], known["models"], known["seed"]) == (2, 3, 7)
    assert known["workload"] == {"name": "unit", "slo_ms": 100, "synthetic": True}
    assert known["extra"] == {}
    json.dumps(known, allow_nan=False)  # JSON-serialisable as is


def test_timeseries_in_summary(known: dict[str, object]) -> None:
    ts = known["timeseries"]
    assert isinstance(ts, dict)
    assert ts["bucket_s"] == 1.0
    assert ts["t_s"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert ts["offered_rps"] == [5.0] * 5
    assert ts["goodput_rps"] == [5.0, 5.0, 5.0, 0.0, 0.0]
    assert ts["late_rps"] == [0.0, 0.0, 0.0, 5.0, 0.0]
    assert ts["refused_rps"] == [0.0, 0.0, 0.0, 0.0, 5.0]
    assert ts["p99_latency_ms"] == [19.0, 20.0, 17.0, 18.0, None]
    assert ts["infers"] == [6, 0, 0, 0, 0]
    assert ts["loads"] == [2, 0, 0, 0, 0]


def test_timeseries_partial_last_bucket() -> None:
    log = RequestLog()
    for i in range(3):  # arrivals at 0, 1.0, 2.0 s
        log.append(i, "m", i * S, i * S + 100 * MS, i * S + MS, "SUCCESS", 1, i, False)
    ts = timeseries(log.table(), ActionLog().table(), 2 * S, duration_ns=2500 * MS)
    assert ts["t_s"] == [0.0, 2.0]
    assert ts["offered_rps"] == [1.0, 2.0]  # second bucket is 0.5 s wide
    with pytest.raises(ValueError, match="positive"):
        timeseries(log.table(), ActionLog().table(), 0)


def test_timeseries_p99_is_nearest_rank() -> None:
    # bucket 0: latencies 1..100 ms -> p99 is the 99th; bucket 1: 1..200 ms -> the 198th
    log = RequestLog()
    i = 0
    for bucket, count in ((0, 100), (1, 200)):
        for lat in range(count, 0, -1):
            arrival = bucket * S + i
            log.append(i, "m", arrival, arrival + S, arrival + lat * MS, "SUCCESS", 1, i, False)
            i += 1
    ts = timeseries(log.table(), ActionLog().table(), S)
    assert ts["p99_latency_ms"] == [99.0, 198.0]
    assert ts["offered_rps"] == [100.0, 200.0]


def test_choose_bucket() -> None:
    assert choose_bucket_ns(10 * S) == S
    assert choose_bucket_ns(2000 * S) == S
    assert choose_bucket_ns(2001 * S) == 2 * S
    assert choose_bucket_ns(8 * 3600 * S) == 15 * S
    assert choose_bucket_ns(0) == S


def test_empty_logs(make_info: InfoFn) -> None:
    s = summarize(RequestLog().table(), ActionLog().table(), make_info(scheduler_cpu_s=None))
    assert s["requests"] == 0
    assert s["succeeded"] == 0
    assert s["slo_attainment"] is None
    assert s["slo_attainment_pct_str"] == "n/a"
    lat = s["latency_ms"]
    assert isinstance(lat, dict)
    assert lat["count"] == 0
    assert all(lat[k] is None for k in ("p50", "p90", "p99", "p99.9", "p99.99", "max", "mean"))
    pe = s["prediction_error"]
    assert isinstance(pe, dict)
    assert pe["Infer"]["count"] == 0 and pe["Infer"]["p99"] is None
    assert pe["LoadWeights"]["frac_over"] is None
    assert s["batch_sizes"] == {}
    assert s["actions_by_status"] == {}
    assert s["device_utilisation"] == 0.0
    assert s["scheduler_cpu_us_per_request"] is None
    assert s["goodput_rps"] == 0.0
    ts = s["timeseries"]
    assert isinstance(ts, dict)
    assert ts["p99_latency_ms"] == [None] * 5
    json.dumps(s, allow_nan=False)


def test_zero_duration_and_devices_give_none(known_tables: Tables, make_info: InfoFn) -> None:
    s = summarize(*known_tables, make_info(duration_ns=0, devices=0, sim_wall_s=0.0))
    assert s["offered_rps"] is None
    assert s["goodput_rps"] is None
    assert s["device_utilisation"] is None
    assert s["sim_requests_per_wall_s"] is None
    json.dumps(s, allow_nan=False)


def test_unknown_status_is_counted_as_refused(make_info: InfoFn) -> None:
    log = RequestLog()
    log.append(0, "m", 0, 10, 5, "SUCCESS", 1, 0, False)
    log.append(1, "m", 0, 10, 5, "SOMETHING_NEW", 0, -1, False)
    s = summarize(log.table(), ActionLog().table(), make_info())
    assert s["refused"]["SOMETHING_NEW"] == 1  # type: ignore[index]
    assert s["slo_attainment"] == 0.5


def test_run_info_is_frozen(make_info: InfoFn) -> None:
    ri = make_info()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ri.policy = "x"  # type: ignore[misc]


# --------------------------------------------------------------------------- percentiles


def test_nearest_rank_exact_fractions() -> None:
    # p99.9 of 1,000 values is the 999th (float 99.9 * 1000 / 100 would round up to 1000)
    assert nearest_rank_indices(1000, [Fraction("99.9")]) == [998]
    assert nearest_rank_indices(1000, [Fraction("99.99")]) == [999]
    assert nearest_rank_indices(1, [Fraction(1), Fraction(50), Fraction(99)]) == [0, 0, 0]
    assert nearest_rank_indices(4, [Fraction(50)]) == [1]
    assert nearest_rank_indices(4, [Fraction(0)]) == [0]
    with pytest.raises(ValueError):
        nearest_rank_indices(0, [Fraction(50)])


def test_latency_percentiles_on_1000_values(make_info: InfoFn) -> None:
    rng = np.random.default_rng(1)
    log = RequestLog()
    for i, lat in enumerate(rng.permutation(np.arange(1, 1001))):
        log.append(i, "m", 0, 10**12, int(lat) * MS, "SUCCESS", 1, i, False)
    s = summarize(log.table(), ActionLog().table(), make_info())
    lat = s["latency_ms"]
    assert isinstance(lat, dict)
    assert (lat["p50"], lat["p90"], lat["p99"], lat["p99.9"], lat["p99.99"], lat["max"]) == (
        500.0,
        900.0,
        990.0,
        999.0,
        1000.0,
        1000.0,
    )


def test_nearest_rank_does_not_modify_input() -> None:
    a = np.array([5, 1, 4, 2, 3], dtype=np.int64)
    assert nearest_rank(a, [Fraction(50), Fraction(100)]) == [3, 5]
    assert a.tolist() == [5, 1, 4, 2, 3]


# --------------------------------------------------------------------------- nines


@pytest.mark.parametrize(
    ("attainment", "text"),
    [
        (0.99997, "99.9970%"),
        (1.0, "100%"),
        (0.5, "50.00%"),
        (0.0, "0.00%"),
        (0.6, "60.00%"),
        (0.9, "90.00%"),
        (0.99, "99.00%"),
        (0.995, "99.50%"),
        (0.999, "99.90%"),
        (0.9999, "99.990%"),
        (0.99999, "99.9990%"),
        (0.999999, "99.99990%"),
        (1 - 1e-9, "99.99999990%"),
        (0.9996, "99.960%"),
        (0.99996, "99.9960%"),
        (0.123456, "12.35%"),
        (None, "n/a"),
    ],
)
def test_format_attainment(attainment: float | None, text: str) -> None:
    assert format_attainment(attainment) == text


@given(st.integers(1, 10**9), st.data())
def test_format_attainment_never_rounds_to_100(n: int, data: st.DataObject) -> None:
    ok = data.draw(st.integers(0, n - 1))
    text = format_attainment(ok / n)
    assert text.endswith("%") and text != "100%"
    value = Fraction(text[:-1])  # exact: float subtraction near 100 loses the last digits
    assert value < 100
    decimals = len(text[:-1].split(".")[1])
    assert decimals >= 2
    # the miss shows at least two significant digits
    miss = 100 - value
    assert miss * 10 ** (decimals - 1) >= 1


# --------------------------------------------------------------------------- properties

STATUSES = [s.name for s in ResponseStatus]


@st.composite
def request_logs(draw: st.DrawFn) -> RequestLog:
    n = draw(st.integers(0, 40))
    log = RequestLog()
    for i in range(n):
        arrival = draw(st.integers(0, 5 * S - 1))
        latency = draw(st.integers(0, 300 * MS))
        status = draw(st.sampled_from(STATUSES))
        log.append(
            i,
            draw(st.sampled_from(["a", "b"])),
            arrival,
            arrival + 100 * MS,
            arrival + latency,
            status,
            1,
            i,
            draw(st.booleans()),
        )
    return log


def _reference_rank(values: list[int], q: Fraction) -> int:
    s = sorted(values)
    return s[max(1, math.ceil(q * len(s) / 100)) - 1]


@settings(max_examples=50, deadline=None)
@given(log=request_logs())
def test_counts_add_up(log: RequestLog, make_info: InfoFn) -> None:
    t = log.table()
    s = summarize(t, ActionLog().table(), make_info())
    refused = s["refused"]
    assert isinstance(refused, dict)
    assert s["succeeded"] + s["late"] + sum(refused.values()) == s["requests"] == len(t)  # type: ignore[operator]
    att = s["slo_attainment"]
    if len(t):
        assert isinstance(att, float) and 0.0 <= att <= 1.0
        assert (s["slo_attainment_pct_str"] == "100%") == (s["succeeded"] == len(t))
    else:
        assert att is None
    for field, counted in (
        ("latency_ms", ("SUCCESS",)),
        ("delivered_latency_ms", ("SUCCESS", "LATE")),
    ):
        values = [
            int(t.response_ns[i] - t.arrival_ns[i])
            for i in range(len(t))
            if t.status_names[t.status[i]] in counted
        ]
        lat = s[field]
        assert isinstance(lat, dict)
        assert lat["count"] == len(values)
        if values:
            for key, q in (("p50", "50"), ("p99", "99"), ("p99.99", "99.99")):
                assert lat[key] == _reference_rank(values, Fraction(q)) / MS
            assert lat["max"] == max(values) / MS
    ts = s["timeseries"]
    assert isinstance(ts, dict)
    assert sum(ts["offered_rps"]) == pytest.approx(len(t))  # 1 s buckets
    for b, got in enumerate(ts["p99_latency_ms"]):
        in_b = [
            int(t.response_ns[i] - t.arrival_ns[i])
            for i in range(len(t))
            if t.arrival_ns[i] // S == b and t.status_names[t.status[i]] in ("SUCCESS", "LATE")
        ]
        assert got == (_reference_rank(in_b, Fraction(99)) / MS if in_b else None)
