"""Reports of a run (DESIGN.md s.7): the terminal table, a side-by-side comparison of policies, and
the output folder (``summary.json``, ``requests.parquet``, ``actions.parquet``, PNG plots).

The parquet files hold one row per request / action with the table's int64 columns (delta-encoded);
the code columns (model, status, kind, device) are dictionary-encoded string columns, and
``cold_start`` is boolean.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from clockwork.telemetry.plots import run_title, write_plots
from clockwork.telemetry.records import ActionTable, RequestTable

SUMMARY_JSON = "summary.json"
REQUESTS_PARQUET = "requests.parquet"
ACTIONS_PARQUET = "actions.parquet"


# --------------------------------------------------------------------------- files


def _dict_column(codes: npt.NDArray[np.int64], names: Sequence[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(
        pa.array(codes.astype(np.int32), type=pa.int32()), pa.array(list(names), type=pa.string())
    )


def requests_arrow(requests: RequestTable) -> pa.Table:
    """The request table as an Arrow table (model and status decoded to dictionary strings)."""
    r = requests
    return pa.table(
        {
            "request_id": r.request_id,
            "model": _dict_column(r.model, r.model_names),
            "arrival_ns": r.arrival_ns,
            "deadline_ns": r.deadline_ns,
            "response_ns": r.response_ns,
            "status": _dict_column(r.status, r.status_names),
            "batch_size": r.batch_size,
            "action_id": r.action_id,
            "cold_start": r.cold_start.astype(bool),
        }
    )


def actions_arrow(actions: ActionTable) -> pa.Table:
    """The action table as an Arrow table (kind, device, model, status as dictionary strings)."""
    a = actions
    return pa.table(
        {
            "action_id": a.action_id,
            "kind": _dict_column(a.kind, a.kind_names),
            "device": _dict_column(a.device, a.device_names),
            "model": _dict_column(a.model, a.model_names),
            "batch_size": a.batch_size,
            "requests": a.requests,
            "sent_ns": a.sent_ns,
            "earliest_ns": a.earliest_ns,
            "latest_ns": a.latest_ns,
            "expected_ns": a.expected_ns,
            "began_ns": a.began_ns,
            "ended_ns": a.ended_ns,
            "actual_ns": a.actual_ns,
            "status": _dict_column(a.status, a.status_names),
        }
    )


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write ``table`` small and fast: int64 columns delta-encoded (times, ids and sizes are close
    to their neighbours), dictionary columns kept as dictionaries, snappy pages."""
    ints = [f.name for f in table.schema if pa.types.is_int64(f.type)]
    dicts = [f.name for f in table.schema if pa.types.is_dictionary(f.type)]
    pq.write_table(
        table,
        path,
        use_dictionary=dicts,
        column_encoding=dict.fromkeys(ints, "DELTA_BINARY_PACKED"),
        compression="snappy",
    )


def _json_safe(v: object) -> object:
    """Non-finite floats become ``None`` (JSON has no NaN); containers are copied recursively."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Mapping):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_safe(x) for x in v]
    return v


def write_report(
    out_dir: Path,
    summary: Mapping[str, object],
    requests: RequestTable,
    actions: ActionTable,
    plots: bool = True,
) -> list[Path]:
    """Write ``summary.json``, ``requests.parquet``, ``actions.parquet`` and (if ``plots``) the PNGs
    into ``out_dir`` (created if needed); return the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    summary_path = out_dir / SUMMARY_JSON
    with summary_path.open("w", encoding="utf-8") as f:
        json.dump(_json_safe(summary), f, indent=2, default=str, allow_nan=False)
        f.write("\n")
    written.append(summary_path)

    req_path = out_dir / REQUESTS_PARQUET
    write_parquet(requests_arrow(requests), req_path)
    written.append(req_path)
    act_path = out_dir / ACTIONS_PARQUET
    write_parquet(actions_arrow(actions), act_path)
    written.append(act_path)

    if plots:
        written.extend(write_plots(out_dir, summary, requests, actions))
    return written


# --------------------------------------------------------------------------- terminal tables


def _get(summary: Mapping[str, object], *keys: str) -> object:
    cur: object = summary
    for k in keys:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(k)
    return cur


def _num(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def _count(v: object) -> str:
    n = _num(v)
    return "-" if n is None else f"{int(n):,}"


def _rate(v: object) -> str:
    n = _num(v)
    return "-" if n is None else f"{n:,.1f}"


def _ms(v: object) -> str:
    n = _num(v)
    return "-" if n is None else f"{n:.3f} ms"


def _signed_ms(v: object) -> str:
    n = _num(v)
    return "-" if n is None else f"{n:+.3f} ms"


def _pct(v: object) -> str:
    n = _num(v)
    return "-" if n is None else f"{100 * n:.1f}%"


def _secs(v: object) -> str:
    n = _num(v)
    return "-" if n is None else f"{n:,.2f} s"


def _workload(summary: Mapping[str, object]) -> str:
    title = run_title(summary)
    return title.split(" / ", 1)[1] if " / " in title else title


def _field(fmt: Callable[[object], str], *keys: str) -> Callable[[Mapping[str, object]], str]:
    """A row formatter: ``fmt`` of the nested value at ``keys`` (a missing count shows 0)."""

    def cell(summary: Mapping[str, object]) -> str:
        v = _get(summary, *keys)
        return fmt(0 if v is None and fmt is _count else v)

    return cell


def _cpu_per_request(summary: Mapping[str, object]) -> str:
    n = _num(summary.get("scheduler_cpu_us_per_request"))
    return "-" if n is None else f"{n:.2f} us"


Row = tuple[str, Callable[[Mapping[str, object]], str]]


def _partial(summary: Mapping[str, object]) -> str:
    if not summary.get("partial"):
        return "no"
    return f"yes: interrupted after {_secs(summary.get('duration_s'))} of arrivals"


def _refused_reasons(summaries: Sequence[Mapping[str, object]]) -> list[str]:
    """Refusal reasons with a non-zero count in any summary, in first-seen order."""
    seen: dict[str, None] = {}
    for s in summaries:
        refused = s.get("refused")
        if isinstance(refused, Mapping):
            for reason, count in refused.items():
                if _num(count):
                    seen[str(reason)] = None
    return list(seen)


# what a client driving a server (``clockwork bench``: its summary has the ``url``) cannot see:
# the server's actions, devices and build
_SERVER_SIDE = frozenset(
    {
        "cold starts",
        "loads",
        "evictions",
        "infers",
        "Infer pred. error p99",
        "Load pred. error p99",
        "device utilisation",
        "build",
    }
)


def _client_view(summaries: Sequence[Mapping[str, object]]) -> bool:
    return bool(summaries) and all(s.get("url") for s in summaries)


def _known_count(v: object) -> str:
    """A count that 0 means unknown for (the devices behind a server a client drives)."""
    return _count(v) if _num(v) else "-"


def _rows(summaries: Sequence[Mapping[str, object]]) -> list[Row]:
    rows = _all_rows(summaries)
    if not _client_view(summaries):
        return rows
    relabel = {"sim wall time": "wall time"}
    return [(relabel.get(label, label), fn) for label, fn in rows if label not in _SERVER_SIDE]


def _all_rows(summaries: Sequence[Mapping[str, object]]) -> list[Row]:
    rows: list[Row] = []
    if any(s.get("partial") for s in summaries):
        rows.append(("partial", _partial))
    rows += [
        ("workload", _workload),
        ("duration", lambda s: _secs(s.get("duration_s"))),
        (
            "devices / models",
            lambda s: f"{_known_count(s.get('devices'))} / {_count(s.get('models'))}",
        ),
        ("requests", lambda s: _count(s.get("requests"))),
        ("offered rps", lambda s: _rate(s.get("offered_rps"))),
        ("goodput rps", lambda s: _rate(s.get("goodput_rps"))),
        # 0: not known (a bench run without --capacity-rps or --gpus)
        ("ideal capacity rps", lambda s: _rate(s.get("ideal_capacity_rps") or None)),
        ("SLO attainment", lambda s: str(s.get("slo_attainment_pct_str", "-"))),
        ("succeeded", lambda s: _count(s.get("succeeded"))),
        ("late", lambda s: _count(s.get("late"))),
    ]

    def refused_total(s: Mapping[str, object]) -> str:
        refused = s.get("refused")
        if not isinstance(refused, Mapping):
            return "-"
        return _count(sum(int(_num(v) or 0) for v in refused.values()))

    rows.append(("refused", refused_total))
    for reason in _refused_reasons(summaries):
        rows.append((f"  {reason}", _field(_count, "refused", reason)))
    for q in ("p50", "p99", "p99.9", "p99.99", "max"):
        rows.append((f"latency {q}", _field(_ms, "latency_ms", q)))
    # late answers too: where a policy answers late, its tail shows here, not above
    for q in ("p99", "max"):
        rows.append((f"delivered latency {q}", _field(_ms, "delivered_latency_ms", q)))
    rows += [
        ("cold starts", lambda s: _count(s.get("cold_starts"))),
        ("loads", lambda s: _count(s.get("loads"))),
        ("evictions", lambda s: _count(s.get("evictions"))),
        ("infers", lambda s: _count(s.get("infers"))),
        (
            "Infer pred. error p99",
            lambda s: _signed_ms(_get(s, "prediction_error", "Infer", "p99")),
        ),
        (
            "Load pred. error p99",
            lambda s: _signed_ms(_get(s, "prediction_error", "LoadWeights", "p99")),
        ),
        ("device utilisation", lambda s: _pct(s.get("device_utilisation"))),
        ("sim wall time", lambda s: _secs(s.get("sim_wall_s"))),
        ("build", lambda s: str(_get(s, "extra", "build") or "-")),
        ("requests / wall s", lambda s: _rate(s.get("sim_requests_per_wall_s"))),
    ]
    if any(_num(s.get("scheduler_cpu_us_per_request")) is not None for s in summaries):
        rows.append(("scheduler CPU / request", _cpu_per_request))
        rows.append(
            ("requests / scheduler CPU s", lambda s: _rate(s.get("scheduler_requests_per_cpu_s")))
        )
    return rows


def format_table(summary: Mapping[str, object]) -> str:
    """The human summary of one run: a title line, then aligned ``label  value`` lines."""
    rows = [(label, fn(summary)) for label, fn in _rows([summary])]
    width = max(len(label) for label, _ in rows)
    if summary.get("url"):
        lines = [f"server {summary['url']} ({summary.get('protocol', '?')})"]
    else:
        lines = [f"policy {summary.get('policy', '?')}"]
    lines += [f"  {label.ljust(width)}  {value}" for label, value in rows]
    return "\n".join(lines)


def format_comparison(summaries: Mapping[str, Mapping[str, object]]) -> str:
    """The rows of ``format_table`` with one right-aligned column per policy (the dict's keys)."""
    names = list(summaries)
    if not names:
        return ""
    values = list(summaries.values())
    rows = [(label, [fn(s) for s in values]) for label, fn in _rows(values)]
    label_w = max(len("policy"), *(len(label) for label, _ in rows))
    col_w = [max(len(name), *(len(cells[i]) for _, cells in rows)) for i, name in enumerate(names)]
    header = "  ".join(
        ["policy".ljust(label_w), *(n.rjust(w) for n, w in zip(names, col_w, strict=True))]
    )
    lines = [header, "-" * len(header)]
    for label, cells in rows:
        lines.append(
            "  ".join(
                [label.ljust(label_w), *(c.rjust(w) for c, w in zip(cells, col_w, strict=True))]
            )
        )
    return "\n".join(lines)
