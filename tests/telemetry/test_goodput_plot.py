"""The goodput-over-time figure: the offered line stays visible above goodput, the time bin is
named, and an SLO that changes during the run (an SLO sweep) is drawn as a step line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import StepPatch

from clockwork.telemetry.plots import (
    bin_label,
    goodput_latency_figure,
    plot_goodput_latency,
    slo_by_bin_ms,
)
from clockwork.telemetry.records import ActionLog, RequestLog, RequestTable
from clockwork.telemetry.summary import RunInfo, summarize

from support.units import MS, S


def _requests(slo_ms_of_second: Callable[[int], float], seconds: int, per_s: int) -> RequestTable:
    """``per_s`` requests each second, all answered within 1 ms, with the SLO of their second."""
    log = RequestLog()
    rid = 0
    for sec in range(seconds):
        for k in range(per_s):
            arrival = sec * S + k * (S // per_s)
            log.append(
                rid,
                "m",
                arrival,
                arrival + round(slo_ms_of_second(sec) * MS),
                arrival + MS,
                "SUCCESS",
                1,
                rid,
                False,
            )
            rid += 1
    return log.table()


def _stairs(ax: Axes) -> dict[str, StepPatch]:
    return {
        str(p.get_label()): p
        for p in ax.patches
        if isinstance(p, StepPatch) and not str(p.get_label()).startswith("_")
    }


def _legend(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def test_bin_label() -> None:
    assert bin_label(1.0) == "1 s"
    assert bin_label(10) == "10 s"
    assert bin_label(0.25) == "250 ms"


def test_slo_by_bin_is_the_median_slo_of_each_bin_s_arrivals() -> None:
    log = RequestLog()
    # bin 0: three at 100 ms and one at 500 ms (a model's own SLO: the median ignores it);
    # bin 1: no arrivals; bin 2: 50 ms, and an arrival past the last bin counts in it
    for rid, (arrival_ms, slo_ms) in enumerate(
        [(0, 100), (100, 100), (200, 500), (300, 100), (2_100, 50), (9_000, 50)]
    ):
        a = arrival_ms * MS
        log.append(rid, "m", a, a + slo_ms * MS, a + MS, "SUCCESS", 1, rid, False)
    got = slo_by_bin_ms(log.table(), S, 3)
    assert got[0] == 100.0
    assert np.isnan(got[1])
    assert got[2] == 50.0
    assert np.isnan(slo_by_bin_ms(RequestLog().table(), S, 2)).all()


def _figure(requests: RequestTable, make_info: Callable[..., RunInfo], seconds: int) -> Figure:
    actions = ActionLog().table()
    summary = summarize(requests, actions, make_info(duration_ns=seconds * S))
    return goodput_latency_figure(summary, requests, actions)


def test_offered_is_drawn_above_goodput_and_the_bin_is_named(
    make_info: Callable[..., RunInfo],
) -> None:
    fig = _figure(_requests(lambda _: 100.0, 6, 20), make_info, 6)
    top, bottom = fig.axes
    stairs = _stairs(top)
    offered, goodput = stairs["offered"], stairs["goodput"]
    # every request succeeded: the two lines coincide, and the offered one is on top, dashed
    assert np.array_equal(offered.get_data()[0], goodput.get_data()[0])
    assert offered.get_zorder() > max(p.get_zorder() for p in top.patches if p is not offered)
    assert offered.get_linestyle() not in ("-", "solid")
    assert "bins of 1 s" in fig.get_suptitle()
    assert "per 1 s bin" in top.get_ylabel()
    assert "per 1 s bin" in bottom.get_ylabel()
    # one SLO all along: the dashed line of the bottom plot, no second axis
    assert len(fig.axes) == 2
    assert "SLO 100 ms" in _legend(bottom)


def test_an_slo_sweep_is_drawn_as_a_step_line_on_a_second_axis(
    make_info: Callable[..., RunInfo],
) -> None:
    seconds = 6
    # halved every 2 s
    fig = _figure(_requests(lambda sec: 100.0 / 2 ** (sec // 2), seconds, 20), make_info, seconds)
    top, bottom, right = fig.axes
    assert right.get_ylabel() == "SLO (ms)"
    (slo,) = _stairs(right).values()
    assert slo.get_data()[0].tolist() == [100, 100, 50, 50, 25, 25]
    assert slo.get_data()[1].tolist() == list(range(seconds + 1))
    below = _stairs(bottom)["SLO (as it changes)"]
    assert below.get_data()[0].tolist() == [100, 100, 50, 50, 25, 25]
    assert "SLO (right axis)" in _legend(top)


def test_a_bin_without_arrivals_keeps_the_slo_before_it(
    make_info: Callable[..., RunInfo], tmp_path: Path
) -> None:
    full = _requests(lambda sec: 80.0 if sec < 3 else 40.0, 6, 10)
    # drop second 3's arrivals: the step holds 80 ms there, then falls to 40
    keep = ~((full.arrival_ns >= 3 * S) & (full.arrival_ns < 4 * S))
    log = RequestLog()
    for i in np.flatnonzero(keep):
        log.append(
            int(full.request_id[i]),
            "m",
            int(full.arrival_ns[i]),
            int(full.deadline_ns[i]),
            int(full.response_ns[i]),
            "SUCCESS",
            1,
            int(full.action_id[i]),
            False,
        )
    requests = log.table()
    fig = _figure(requests, make_info, 6)
    (slo,) = _stairs(fig.axes[2]).values()
    assert slo.get_data()[0].tolist() == [80, 80, 80, 80, 40, 40]
    actions = ActionLog().table()
    summary = summarize(requests, actions, make_info(duration_ns=6 * S))
    path = plot_goodput_latency(tmp_path / "g.png", summary, requests, actions)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
