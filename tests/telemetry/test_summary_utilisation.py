"""Utilisation counts work that ran on after the last arrival against the time it took."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from clockwork.telemetry.records import ActionLog, RequestLog
from clockwork.telemetry.summary import RunInfo, summarize

from support.units import S


def test_work_in_the_drain_never_makes_utilisation_exceed_one(
    make_info: Callable[..., RunInfo],
) -> None:
    info = make_info(duration_ns=1 * S, devices=1)
    requests = RequestLog()
    actions = ActionLog()
    # one device busy back to back from 0 to 1.5 s: the last action ends in the drain
    for i in range(3):
        requests.append(
            i, "m", i * S // 2, i * S // 2 + S, (i + 1) * S // 2, "SUCCESS", 1, i, False
        )
        actions.append(
            i,
            "Infer",
            "w0/0",
            "m",
            1,
            1,
            i * S // 2,
            i * S // 2,
            i * S // 2 + S,
            S // 2,
            i * S // 2,
            (i + 1) * S // 2,
            S // 2,
            "SUCCESS",
        )
    s = summarize(requests.table(), actions.table(), info)
    assert s["device_utilisation"] == pytest.approx(1.0)


def test_work_inside_the_run_is_divided_by_its_duration(make_info: Callable[..., RunInfo]) -> None:
    info = make_info(duration_ns=2 * S, devices=1)
    requests = RequestLog()
    actions = ActionLog()
    requests.append(0, "m", 0, S, S // 2, "SUCCESS", 1, 0, False)
    actions.append(0, "Infer", "w0/0", "m", 1, 1, 0, 0, S, S // 2, 0, S // 2, S // 2, "SUCCESS")
    s = summarize(requests.table(), actions.table(), info)
    assert s["device_utilisation"] == pytest.approx(0.25)
