from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from clockwork.telemetry.records import ActionLog, ActionTable, RequestLog, RequestTable
from clockwork.telemetry.report import format_comparison, format_table, write_report
from clockwork.telemetry.summary import RunInfo, summarize

Tables = tuple[RequestTable, ActionTable]
InfoFn = Callable[..., RunInfo]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOT_NAMES = {
    "goodput_latency_over_time.png",
    "latency_cdf.png",
    "batch_sizes.png",
    "prediction_error.png",
}


def test_write_report_files_and_round_trip(
    tmp_path: Path, known_tables: Tables, make_info: InfoFn
) -> None:
    reqs, acts = known_tables
    summary = summarize(reqs, acts, make_info())
    out = tmp_path / "nested" / "run"
    written = write_report(out, summary, reqs, acts)
    names = {p.name for p in written}
    assert names == {"summary.json", "requests.parquet", "actions.parquet"} | PLOT_NAMES
    assert all(p.parent == out and p.stat().st_size > 0 for p in written)

    loaded = json.loads((out / "summary.json").read_text())
    assert loaded == json.loads(json.dumps(summary))
    assert loaded["slo_attainment_pct_str"] == "60.00%"

    rt = pq.read_table(out / "requests.parquet")
    assert rt.num_rows == len(reqs) == 25
    assert pa.types.is_dictionary(rt.schema.field("status").type)
    statuses = rt.column("status").to_pylist()
    assert statuses.count("SUCCESS") == 15
    assert statuses.count("LATE") == 5
    assert statuses[-1] == "DEADLINE_INFEASIBLE"
    assert rt.column("model").to_pylist()[:4] == ["m0", "m1", "m2", "m0"]
    assert rt.column("cold_start").to_pylist().count(True) == 4
    assert rt.column("arrival_ns").to_pylist() == reqs.arrival_ns.tolist()

    at = pq.read_table(out / "actions.parquet")
    assert at.num_rows == len(acts) == 11
    assert at.column("kind").to_pylist().count("Infer") == 7
    assert at.column("status").to_pylist()[6] == "TOO_LATE"
    assert at.column("device").to_pylist()[:2] == ["gpu0", "gpu1"]
    assert at.column("actual_ns").to_pylist() == acts.actual_ns.tolist()


def test_write_report_empty(tmp_path: Path, make_info: InfoFn) -> None:
    # plots of empty tables are tested in test_plots
    reqs, acts = RequestLog().table(), ActionLog().table()
    summary = summarize(reqs, acts, make_info())
    written = write_report(tmp_path, summary, reqs, acts, plots=False)
    assert [p.name for p in written] == ["summary.json", "requests.parquet", "actions.parquet"]
    assert pq.read_table(tmp_path / "requests.parquet").num_rows == 0
    assert pq.read_table(tmp_path / "actions.parquet").num_rows == 0
    assert not list(tmp_path.glob("*.png"))
    assert json.loads((tmp_path / "summary.json").read_text())["latency_ms"]["p99"] is None


def test_summary_json_has_no_nan(tmp_path: Path, known_tables: Tables, make_info: InfoFn) -> None:
    reqs, acts = known_tables
    summary = summarize(reqs, acts, make_info(ideal_capacity_rps=float("nan")))
    write_report(tmp_path, summary, reqs, acts, plots=False)
    text = (tmp_path / "summary.json").read_text()
    assert "NaN" not in text
    assert json.loads(text)["ideal_capacity_rps"] is None


def _lines(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines()[1:]:
        label, _, value = line.strip().partition("  ")
        out[label] = value.strip()
    return out


def test_format_table(known_tables: Tables, make_info: InfoFn) -> None:
    summary = summarize(*known_tables, make_info())
    text = format_table(summary)
    assert text.splitlines()[0] == "policy clockwork"
    rows = _lines(text)
    assert rows["workload"] == "unit (synthetic)"
    assert rows["requests"] == "25"
    assert rows["offered rps"] == "5.0"
    assert rows["goodput rps"] == "3.0"
    assert rows["ideal capacity rps"] == "10.0"
    assert rows["SLO attainment"] == "60.00%"
    assert rows["late"] == "5"
    assert rows["refused"] == "5"
    assert rows["OVERLOADED"] == "3"
    assert rows["DEADLINE_INFEASIBLE"] == "2"
    assert "WORKER_LOST" not in rows  # zero reasons are left out
    assert rows["latency p50"] == "9.000 ms"  # successful requests only
    assert rows["latency p99.99"] == "20.000 ms"
    assert rows["latency max"] == "20.000 ms"
    assert rows["delivered latency p99"] == "20.000 ms"  # late ones too
    assert rows["delivered latency max"] == "20.000 ms"
    assert rows["cold starts"] == "4"
    assert rows["loads"] == "2"
    assert rows["evictions"] == "1"
    assert rows["Infer pred. error p99"] == "+2.000 ms"
    assert rows["Load pred. error p99"] == "+0.300 ms"
    assert rows["device utilisation"] == "0.3%"
    assert rows["sim wall time"] == "0.50 s"
    assert rows["requests / wall s"] == "50.0"
    assert rows["scheduler CPU / request"] == "100.00 us"
    # values start in one column
    starts = set()
    for line in text.splitlines()[1:]:
        m = re.match(r"^  .*?\S {2,}(\S)", line)
        assert m is not None, line
        starts.add(m.start(1))
    assert len(starts) == 1


def test_format_table_empty(make_info: InfoFn) -> None:
    summary = summarize(RequestLog().table(), ActionLog().table(), make_info(scheduler_cpu_s=None))
    rows = _lines(format_table(summary))
    assert rows["SLO attainment"] == "n/a"
    assert rows["latency p99"] == "-"
    assert "scheduler CPU / request" not in rows


def test_format_comparison(known_tables: Tables, make_info: InfoFn) -> None:
    a = summarize(*known_tables, make_info())
    b = summarize(RequestLog().table(), ActionLog().table(), make_info(policy="fifo"))
    text = format_comparison({"clockwork": a, "fifo": b})
    lines = text.splitlines()
    assert lines[0].split() == ["policy", "clockwork", "fifo"]
    assert set(lines[1]) == {"-"}
    att = next(line for line in lines if line.startswith("SLO attainment"))
    assert att.split()[-2:] == ["60.00%", "n/a"]
    over = next(line for line in lines if line.strip().startswith("OVERLOADED"))
    assert over.split() == ["OVERLOADED", "3", "0"]
    # every line is as wide as the header: columns are aligned
    assert {len(line) for line in lines} == {len(lines[0])}
    assert format_comparison({}) == ""
