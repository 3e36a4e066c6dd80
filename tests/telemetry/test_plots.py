from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from clockwork.telemetry.plots import (
    GOODPUT_LATENCY,
    LATENCY_CDF,
    PLOTS,
    PlotFn,
    plot_goodput_latency,
    run_title,
    slo_ms_of,
)
from clockwork.telemetry.records import ActionLog, ActionTable, RequestLog, RequestTable
from clockwork.telemetry.summary import RunInfo, summarize

from support.units import MS

Tables = tuple[RequestTable, ActionTable]
InfoFn = Callable[..., RunInfo]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _big() -> tuple[RequestTable, ActionTable]:
    """10,000 requests (so the CDF is subsampled) and 2,000 actions with a spread of errors."""
    rng = np.random.default_rng(3)
    reqs = RequestLog()
    for i in range(10_000):
        arrival = int(i * 0.5 * MS)
        lat = int(rng.lognormal(np.log(20 * MS), 0.5))
        reqs.append(
            i,
            "m",
            arrival,
            arrival + 100 * MS,
            arrival + lat,
            "SUCCESS" if lat <= 100 * MS else "LATE",
            4,
            i // 4,
            i % 100 == 0,
        )
    acts = ActionLog()
    for j in range(2_000):
        kind = "Infer" if j % 10 else "LoadWeights"
        err = int(rng.normal(0, 0.2 * MS))
        acts.append(
            j,
            kind,
            "gpu0",
            "m",
            4,
            4,
            0,
            0,
            0,
            5 * MS,
            j,
            j + 5 * MS + err,
            5 * MS + err,
            "SUCCESS",
        )
    return reqs.table(), acts.table()


# Every plot of empty tables; of 10,000 requests the two whose code depends on size (CDF
# subsampling, many buckets). The hand-built logs are plotted by test_report's write_report test.
CASES = [("empty", name, fn) for name, fn in PLOTS] + [
    ("big", name, fn) for name, fn in PLOTS if name in {LATENCY_CDF, GOODPUT_LATENCY}
]


@pytest.mark.parametrize(("data", "name", "fn"), CASES)
def test_plot_writes_png(
    tmp_path: Path, data: str, name: str, fn: PlotFn, make_info: InfoFn
) -> None:
    reqs, acts = _big() if data == "big" else (RequestLog().table(), ActionLog().table())
    summary = summarize(reqs, acts, make_info())
    path = tmp_path / name
    assert fn(path, summary, reqs, acts) == path
    data_bytes = path.read_bytes()
    assert data_bytes[:8] == PNG_MAGIC
    assert len(data_bytes) > 1000


def test_plot_without_timeseries_in_summary(
    tmp_path: Path, known_tables: Tables, make_info: InfoFn
) -> None:
    reqs, acts = known_tables
    summary = summarize(reqs, acts, make_info())
    del summary["timeseries"]  # the plot then computes it from the tables
    path = plot_goodput_latency(tmp_path / "g.png", summary, reqs, acts)
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_titles_and_slo() -> None:
    assert run_title({"policy": "fifo", "workload": {"name": "azure"}}) == "fifo / azure"
    assert (
        run_title({"policy": "cw", "workload": {"name": "poisson", "synthetic": True}})
        == "cw / poisson (synthetic)"
    )
    assert run_title({}) == "? / ?"
    assert slo_ms_of({"workload": {"slo_ms": 100}}) == 100.0
    assert slo_ms_of({"workload": {"slo_ms": [100, 200]}}) is None
    assert slo_ms_of({"workload": {}}) is None
