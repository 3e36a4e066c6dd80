from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from clockwork.telemetry.plots import PLOTS, run_title, slo_ms_of, write_plots
from clockwork.telemetry.records import ActionLog, ActionTable, RequestLog, RequestTable
from clockwork.telemetry.summary import RunInfo, summarize

Tables = tuple[RequestTable, ActionTable]
InfoFn = Callable[..., RunInfo]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


MS = 1_000_000


def _big() -> tuple[RequestTable, ActionTable]:
    """10,000 requests (so the CDF is subsampled) and 2,000 actions with a spread of errors."""
    rng = np.random.default_rng(3)
    reqs = RequestLog()
    for i in range(10_000):
        arrival = int(i * 0.5 * MS)
        lat = int(rng.lognormal(np.log(20 * MS), 0.5))
        reqs.append(i, "m", arrival, arrival + 100 * MS, arrival + lat,
                    "SUCCESS" if lat <= 100 * MS else "LATE", 4, i // 4, i % 100 == 0)
    acts = ActionLog()
    for j in range(2_000):
        kind = "Infer" if j % 10 else "LoadWeights"
        err = int(rng.normal(0, 0.2 * MS))
        acts.append(j, kind, "gpu0", "m", 4, 4, 0, 0, 0, 5 * MS, j, j + 5 * MS + err,
                    5 * MS + err, "SUCCESS")
    return reqs.table(), acts.table()


@pytest.fixture(params=["known", "big", "empty"])
def plot_data(request: pytest.FixtureRequest, known_tables: Tables) -> Tables:
    if request.param == "known":
        return known_tables
    if request.param == "big":
        return _big()
    return RequestLog().table(), ActionLog().table()


@pytest.mark.parametrize(("name", "fn"), PLOTS)
def test_plot_writes_png(
    tmp_path: Path, name: str, fn: object, plot_data: Tables, make_info: InfoFn
) -> None:
    reqs, acts = plot_data
    summary = summarize(reqs, acts, make_info())
    path = tmp_path / name
    assert callable(fn)
    assert fn(path, summary, reqs, acts) == path
    data_bytes = path.read_bytes()
    assert data_bytes[:8] == PNG_MAGIC
    assert len(data_bytes) > 1000


def test_plot_without_timeseries_in_summary(
    tmp_path: Path, known_tables: Tables, make_info: InfoFn
) -> None:
    reqs, acts = known_tables
    summary = summarize(reqs, acts, make_info())
    del summary["timeseries"]
    paths = write_plots(tmp_path, summary, reqs, acts)
    assert len(paths) == 4
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in paths)


def test_titles_and_slo() -> None:
    assert run_title({"policy": "fifo", "workload": {"name": "azure"}}) == "fifo / azure"
    assert run_title(
        {"policy": "cw", "workload": {"name": "poisson", "synthetic": True}}
    ) == "cw / poisson (synthetic)"
    assert run_title({}) == "? / ?"
    assert slo_ms_of({"workload": {"slo_ms": 100}}) == 100.0
    assert slo_ms_of({"workload": {"slo_ms": [100, 200]}}) is None
    assert slo_ms_of({"workload": {}}) is None
