"""Azure Functions trace loading, function-to-model mapping, scaling and replay."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clockwork.core.errors import InvalidInputError
from clockwork.core.units import NS_PER_MS, NS_PER_S
from clockwork.workload import DEFAULT_AZURE_TRACE, Arrival, AzureReplay, AzureTrace

# the shared data folder sits beside the repository (here and on CI)
REAL_TRACE = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "data"
    / "traces"
    / "azure_functions_2019_sample500"
    / "invocations.csv"
)
SLO = 100 * NS_PER_MS
MINUTE = 60 * NS_PER_S
HEADER = "HashOwner,HashApp,HashFunction,Trigger"


def write_csv(tmp_path: Path, text: str, name: str = "invocations.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def good_csv(rows: list[list[int]], first_minute: int = 480) -> str:
    t = len(rows[0])
    lines = [HEADER + "," + ",".join(str(first_minute + i) for i in range(t))]
    for i, row in enumerate(rows):
        lines.append(f"o{i},a{i},f{i},http," + ",".join(map(str, row)))
    return "\n".join(lines) + "\n"


def models(n: int) -> list[str]:
    return [f"m{i}" for i in range(n)]


def replay(trace: AzureTrace, n: int, **kw: object) -> AzureReplay:
    args: dict[str, object] = {
        "capacity_rps": 1000.0,
        "load_factor": 1.0,
        "duration_ns": MINUTE,
        "slo_ns": SLO,
        "seed": 1,
    }
    args.update(kw)
    return AzureReplay(trace, models(n), **args)  # type: ignore[arg-type]


# ---------------------------------------------------------------- loading


def test_load_small_file(tmp_path: Path) -> None:
    p = write_csv(tmp_path, good_csv([[1, 2, 3], [0, 0, 7]]))
    tr = AzureTrace.load(p)
    assert tr.num_functions == 2
    assert tr.num_minutes == 3
    assert tr.minute_labels == (480, 481, 482)
    assert tr.counts.tolist() == [[1, 2, 3], [0, 0, 7]]
    assert tr.functions == ("f0", "f1")
    assert tr.triggers == ("http", "http")
    assert tr.totals.tolist() == [6, 7]
    assert tr.synthetic is False
    assert tr.describe()["path"] == str(p)
    with pytest.raises(ValueError):
        tr.counts[0, 0] = 5  # read-only


def test_load_skips_blank_lines_and_crlf(tmp_path: Path) -> None:
    text = good_csv([[1, 2], [3, 4]]).replace("\n", "\r\n") + "\r\n"
    tr = AzureTrace.load(write_csv(tmp_path, text))
    assert tr.counts.tolist() == [[1, 2], [3, 4]]


ROW_OK = "o,a,f,http,1,2,3"
HEAD3 = HEADER + ",480,481,482"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty file"),
        (HEAD3 + "\n", "no function rows"),
        (
            "HashOwner,HashApp,HashFunc,Trigger,480\n" + "o,a,f,t,1\n",
            r"line 1, column 3: header is 'HashFunc'",
        ),
        (HEADER + "\no,a,f,t\n", r"line 1: header has 4 columns"),
        (HEADER + ",480,x\no,a,f,t,1,2\n", r"line 1, column 6: minute header 'x'"),
        (HEADER + ",480,482\no,a,f,t,1,2\n", r"line 1, column 6: .*consecutive"),
        (
            HEAD3 + "\n" + ROW_OK + "\no,a,f,http,1,-2,3\n",
            r"line 3, column 6 \(minute 481\): count '-2' is not a non-negative integer",
        ),
        (
            HEAD3 + "\n" + ROW_OK + "\no,a,f,http,1,2,3.5\n",
            r"line 3, column 7 \(minute 482\): count '3.5'",
        ),
        (HEAD3 + "\no,a,f,http,1,,3\n", r"line 2, column 6 \(minute 481\): count ''"),
        (HEAD3 + "\no,a,f,http,1, 2,3\n", r"line 2, column 6 \(minute 481\): count ' 2'"),
        (HEAD3 + "\no,a,f,http,one,2,3\n", r"line 2, column 5 \(minute 480\): count 'one'"),
        (
            HEAD3 + "\n" + ROW_OK + "\n" + ROW_OK + "\no,a,f,http,1,2\n",
            r"line 4: 6 columns, but the header has 7",
        ),
        (HEAD3 + "\n" + ROW_OK + ",9\n", r"line 2: 8 columns, but the header has 7"),
        (HEAD3 + "\n" + ROW_OK + "\no,,f,http,1,2,3\n", r"line 3, column 2 \(HashApp\): empty"),
        (HEAD3 + "\no,a,f,http,1,2,99999999999999999999\n", r"line 2, column 7.*too large"),
    ],
)
def test_malformed_files_raise_with_location(tmp_path: Path, text: str, needle: str) -> None:
    p = write_csv(tmp_path, text)
    with pytest.raises(InvalidInputError, match=needle) as info:
        AzureTrace.load(p)
    assert str(p) in str(info.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(InvalidInputError, match="not found") as info:
        AzureTrace.load(missing)
    assert str(missing) in str(info.value)
    with pytest.raises(InvalidInputError, match="directory"):
        AzureTrace.load(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "bin.csv"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InvalidInputError, match="UTF-8"):
        AzureTrace.load(p)


def test_from_counts_is_synthetic() -> None:
    tr = AzureTrace.from_counts([[1, 2]])
    assert tr.synthetic is True
    assert replay(tr, 1).describe()["synthetic"] is True
    with pytest.raises(InvalidInputError):
        AzureTrace.from_counts([[1, -1]])
    with pytest.raises(InvalidInputError):
        AzureTrace.from_counts([[1.5, 2.0]])  # type: ignore[list-item]


# ---------------------------------------------------------------- mapping


def test_popular_functions_on_first_models_in_contiguous_blocks() -> None:
    # Totals (row order): 5, 50, 20, 1, 40, 30, 10, 2, 3, 4 -> ranked rows 1,4,5,2,6,0,9,8,7,3.
    totals = [5, 50, 20, 1, 40, 30, 10, 2, 3, 4]
    tr = AzureTrace.from_counts([[t] for t in totals])
    r = replay(tr, 3)
    # Rank i -> model floor(i * 3 / 10): ranks 0-3, 4-6, 7-9.
    assert r.model_functions("m0") == [(1, 0), (2, 0), (4, 0), (5, 0)]
    assert r.model_functions("m1") == [(0, 0), (6, 0), (9, 0)]
    assert r.model_functions("m2") == [(3, 0), (7, 0), (8, 0)]
    assert r.model_counts[:, 0].tolist() == [140, 19, 6]
    assert r.copies == 1
    d = r.describe()
    assert d["copies"] == 1 and d["copies_made"] is False and d["shift_minutes"] == 0
    assert d["functions_per_model"] == [3, 4]


def test_ties_keep_row_order() -> None:
    tr = AzureTrace.from_counts([[1], [7], [1], [7]])
    r = replay(tr, 4)
    assert [r.model_functions(f"m{j}") for j in range(4)] == [
        [(1, 0)],
        [(3, 0)],
        [(0, 0)],
        [(2, 0)],
    ]


@settings(max_examples=40, deadline=None)
@given(
    totals=st.lists(st.integers(0, 1000), min_size=1, max_size=60),
    n=st.integers(1, 150),
)
def test_mapping_properties(totals: list[int], n: int) -> None:
    tr = AzureTrace.from_counts([[1, t] for t in totals])  # minute 0 (the window) is not empty
    r = replay(tr, n)
    f = len(totals)
    fp = f * r.copies
    assert r.copies == (-(-n // f) if n > f else 1)
    blocks = np.bincount(r.function_model, minlength=n)
    assert blocks.sum() == fp
    assert blocks.min() >= 1  # every model serves something
    assert blocks.max() - blocks.min() <= 1  # blocks as equal as floor(i * N / F) makes them
    # Popularity is nonincreasing along the models (mean per function of each block).
    per_model = [
        sum(int(tr.totals[row]) for row, _ in r.model_functions(f"m{j}")) / blocks[j]
        for j in range(n)
    ]
    assert all(x >= y for x, y in itertools.pairwise(per_model))
    # Nothing lost or duplicated: every (row, copy) appears exactly once.
    pairs = [p for j in range(n) for p in r.model_functions(f"m{j}")]
    assert sorted(pairs) == sorted((row, k) for k in range(r.copies) for row in range(f))
    assert int(r.model_counts.sum()) == r.copies * int(tr.counts.sum())


def test_copies_with_shift_when_more_models_than_functions() -> None:
    tr = AzureTrace.from_counts([[1, 2, 3, 4, 5, 6]])
    r = replay(tr, 3)
    assert (r.copies, r.shift_used) == (3, 2)
    # Copy k is the trace delayed by 2k minutes; copies rank in copy order -> models 0, 1, 2.
    assert r.model_counts.tolist() == [[1, 2, 3, 4, 5, 6], [5, 6, 1, 2, 3, 4], [3, 4, 5, 6, 1, 2]]
    d = r.describe()
    assert d["copies"] == 3 and d["copies_made"] is True and d["shift_minutes"] == 2
    assert d["replayed_functions"] == 3
    # An explicit shift.
    r2 = replay(tr, 2, shift_minutes=1)
    assert r2.model_counts.tolist() == [[1, 2, 3, 4, 5, 6], [6, 1, 2, 3, 4, 5]]
    assert r2.describe()["shift_minutes"] == 1


def test_copies_two_functions_five_models() -> None:
    tr = AzureTrace.from_counts([[1, 0, 0, 0], [0, 9, 0, 0]])
    r = replay(tr, 5)
    assert (r.copies, r.shift_used) == (3, 1)  # ceil(5 / 2) = 3; 4 // 3 = 1
    # Ranked: (1,c0),(1,c1),(1,c2),(0,c0),(0,c1),(0,c2); rank i -> floor(i * 5 / 6).
    assert [r.model_functions(f"m{j}") for j in range(5)] == [
        [(1, 0), (1, 1)],
        [(1, 2)],
        [(0, 0)],
        [(0, 1)],
        [(0, 2)],
    ]
    assert r.model_counts.tolist() == [
        [0, 9, 9, 0],
        [0, 0, 0, 9],
        [1, 0, 0, 0],
        [0, 1, 0, 0],
        [0, 0, 1, 0],
    ]


# ---------------------------------------------------------------- scaling and replay


def test_mean_rate_matches_load_times_capacity() -> None:
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 50, size=(40, 30))
    tr = AzureTrace.from_counts(counts)
    r = replay(
        tr, 16, capacity_rps=4000.0, load_factor=0.75, minute_ns=NS_PER_S, duration_ns=20 * NS_PER_S
    )
    arrivals = list(r.arrivals())
    assert r.mean_offered_rps == 3000.0
    assert len(arrivals) / 20 == pytest.approx(3000.0, rel=0.03)  # 60,000 expected, sd 245
    assert r.describe()["mean_offered_rps"] == 3000.0
    # trace_mean_rps: window invocations / duration at 1 s per trace minute.
    assert r.trace_mean_rps == pytest.approx(counts[:, :20].sum() / 20)
    assert r.scale == pytest.approx(3000.0 / r.trace_mean_rps)


def test_per_model_counts_follow_expected() -> None:
    tr = AzureTrace.from_counts([[100, 0], [300, 0], [0, 400]])
    r = replay(
        tr, 3, capacity_rps=400.0, minute_ns=10 * NS_PER_S, duration_ns=20 * NS_PER_S, seed=4
    )
    assert r.trace_mean_rps == pytest.approx(800 / 20)
    by_model = Counter(a.model for a in r.arrivals())
    # scale 10: minute 0 -> m0 3000 (row 1), m1 1000 (row 0); minute 1 -> m0 4000 (row 2)...
    # ranks: row 2 (400), row 1 (300), row 0 (100) -> m0, m1, m2.
    assert by_model["m0"] == pytest.approx(4000, rel=0.06)
    assert by_model["m1"] == pytest.approx(3000, rel=0.06)
    assert by_model["m2"] == pytest.approx(1000, rel=0.1)
    minute0 = [a for a in r.arrivals() if a.time_ns < 10 * NS_PER_S]
    assert {a.model for a in minute0} == {"m1", "m2"}


def test_minute_compression() -> None:
    tr = AzureTrace.from_counts([[100, 300]])
    slow = replay(tr, 1, duration_ns=2 * MINUTE)
    fast = replay(tr, 1, duration_ns=2 * NS_PER_S, minute_ns=NS_PER_S)
    assert fast.trace_mean_rps == pytest.approx(60 * slow.trace_mean_rps)
    assert fast.scale == pytest.approx(slow.scale / 60)
    arrivals = list(fast.arrivals())
    first = sum(a.time_ns < NS_PER_S for a in arrivals)
    second = len(arrivals) - first
    # 2,000 offered over 2 s, split 1:3 by the trace shape.
    assert first == pytest.approx(500, rel=0.15)
    assert second == pytest.approx(1500, rel=0.1)
    assert all(a.time_ns < 2 * NS_PER_S for a in arrivals)


def test_partial_last_minute_is_cut_and_counted() -> None:
    tr = AzureTrace.from_counts([[60, 60]])
    r = replay(tr, 1, duration_ns=MINUTE + MINUTE // 2, capacity_rps=100.0)
    assert r.num_replay_minutes == 2
    # 90 s at 1 invocation/s in the trace.
    assert r.trace_mean_rps == pytest.approx(1.0)
    assert r.expected_counts(1)[0] == pytest.approx(3000.0)
    arrivals = list(r.arrivals())
    assert max(a.time_ns for a in arrivals) < MINUTE + MINUTE // 2
    assert len(arrivals) == pytest.approx(9000, rel=0.05)
    with pytest.raises(InvalidInputError):
        r.expected_counts(2)


def test_wrapping_and_start_minute() -> None:
    tr = AzureTrace.from_counts([[10, 0, 0]])
    r = replay(tr, 1, duration_ns=7 * NS_PER_S, minute_ns=NS_PER_S)
    assert r.wrapped is True and r.describe()["wrapped"] is True
    seconds = {a.time_ns // NS_PER_S for a in r.arrivals()}
    assert seconds == {0, 3, 6}  # trace minute 0 replays at 0, 3 and 6 s
    r2 = replay(tr, 1, duration_ns=2 * NS_PER_S, minute_ns=NS_PER_S, start_minute=2)
    assert r2.wrapped is True
    assert {a.time_ns // NS_PER_S for a in r2.arrivals()} == {1}
    assert r2.describe()["start_minute"] == 2
    assert r2.describe()["start_minute_label"] == 2
    r3 = replay(tr, 1, duration_ns=3 * NS_PER_S, minute_ns=NS_PER_S)
    assert r3.wrapped is False


def test_bad_replay_parameters() -> None:
    tr = AzureTrace.from_counts([[10, 0, 0]])
    with pytest.raises(InvalidInputError, match="start_minute 3"):
        replay(tr, 1, start_minute=3)
    with pytest.raises(InvalidInputError, match="no invocations"):
        replay(tr, 1, start_minute=1, duration_ns=2 * NS_PER_S, minute_ns=NS_PER_S)
    with pytest.raises(InvalidInputError, match="capacity_rps"):
        replay(tr, 1, capacity_rps=0.0)
    with pytest.raises(InvalidInputError, match="load_factor"):
        replay(tr, 1, load_factor=-1.0)
    with pytest.raises(InvalidInputError, match="minute_ns"):
        replay(tr, 1, minute_ns=0)
    with pytest.raises(InvalidInputError, match="appears twice"):
        AzureReplay(tr, ["a", "a"], 1.0, 1.0, MINUTE, SLO, 1)
    with pytest.raises(InvalidInputError, match="unknown model"):
        replay(tr, 1).model_functions("zzz")


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    n=st.integers(1, 12),
    duration_ns=st.integers(1, 5 * NS_PER_S),
    minute_ns=st.integers(NS_PER_MS, 2 * NS_PER_S),
    start=st.integers(0, 4),
)
def test_replay_deterministic_sorted_within_duration(
    seed: int, n: int, duration_ns: int, minute_ns: int, start: int
) -> None:
    tr = AzureTrace.from_counts([[3, 0, 5, 1, 2], [0, 7, 0, 0, 1], [1, 1, 1, 1, 1]])
    r = replay(
        tr,
        n,
        seed=seed,
        duration_ns=duration_ns,
        minute_ns=minute_ns,
        start_minute=start,
        capacity_rps=300.0,
    )
    a = list(r.arrivals())
    assert a == list(r.arrivals())
    times = [x.time_ns for x in a]
    assert times == sorted(times)
    assert all(0 <= t < duration_ns for t in times)
    assert all(x.slo_ns == SLO and x.model in r.models for x in a)
    assert all(r.on_response(x, x.time_ns) is None for x in a[:3])


def test_seeds_differ_and_ties_ordered_by_model() -> None:
    tr = AzureTrace.from_counts([[500, 500], [500, 500]])
    one = list(replay(tr, 2, seed=1).arrivals())
    assert one != list(replay(tr, 2, seed=2).arrivals())
    keys = [(a.time_ns, a.model) for a in one]
    assert keys == sorted(keys)


def test_replay_is_lazy() -> None:
    tr = AzureTrace.from_counts(np.full((50, 100), 1000))
    # 10^9 arrivals if materialised; only the first minute's worth is generated here.
    r = replay(tr, 50, capacity_rps=1e6, duration_ns=1000 * MINUTE)
    first = list(itertools.islice(r.arrivals(), 5))
    assert len(first) == 5
    assert all(isinstance(a, Arrival) for a in first)


# ---------------------------------------------------------------- the real shared trace


@pytest.fixture(scope="module")
def real_trace() -> AzureTrace:
    if not REAL_TRACE.is_file():
        pytest.skip(f"{REAL_TRACE} not present")
    return AzureTrace.load(REAL_TRACE)


def test_real_trace_contents(real_trace: AzureTrace) -> None:
    # The figures in ../shared/data/traces/README.md s.2.
    assert real_trace.num_functions == 500
    assert real_trace.num_minutes == 480
    assert real_trace.minute_labels[0] == 480 and real_trace.minute_labels[-1] == 959
    assert int(real_trace.counts.sum()) == 3_037_902
    per_minute = real_trace.counts.sum(axis=0)
    assert int(per_minute.min()) == 3_013 and int(per_minute.max()) == 7_603
    assert Counter(real_trace.triggers)["timer"] == 247
    assert DEFAULT_AZURE_TRACE.name == REAL_TRACE.name


def test_real_trace_replay_4026_models(real_trace: AzureTrace) -> None:
    r = AzureReplay(
        real_trace,
        models(4026),
        capacity_rps=5500.0,
        load_factor=0.8,
        duration_ns=30 * NS_PER_S,
        slo_ns=SLO,
        seed=9,
        start_minute=100,
    )
    d = r.describe()
    assert d["synthetic"] is False
    assert d["trace_path"] == str(REAL_TRACE)
    assert (d["copies"], d["shift_minutes"], d["replayed_functions"]) == (9, 53, 4500)
    assert d["functions_per_model"] == [1, 2]
    arrivals = list(r.arrivals())
    assert len(arrivals) / 30 == pytest.approx(4400.0, rel=0.03)
    # The most popular function (and so model m0) dominates; the last models are quiet.
    counts = Counter(a.model for a in arrivals)
    assert counts["m0"] == max(counts.values())
    top = int(np.argmax(real_trace.totals))
    assert r.model_functions("m0")[0] == (top, 0)


@pytest.mark.slow
def test_real_trace_generation_speed(real_trace: AzureTrace) -> None:
    """At least 300,000 arrivals per second of wall time (run with ``-m slow``)."""
    r = AzureReplay(
        real_trace,
        models(4026),
        capacity_rps=5500.0,
        load_factor=1.0,
        duration_ns=10 * MINUTE,
        slo_ns=SLO,
        seed=1,
    )
    start = time.perf_counter()
    n = sum(1 for _ in r.arrivals())
    rate = n / (time.perf_counter() - start)
    assert n == pytest.approx(5500 * 600, rel=0.01)
    assert rate > 300_000, f"{rate:,.0f} arrivals/s"
