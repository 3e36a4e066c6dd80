"""Hand-built request and action logs shared by the telemetry tests (as fixtures: the tests run
with ``--import-mode=importlib``, so they cannot import a sibling module)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from clockwork.telemetry.records import ActionLog, ActionTable, RequestLog, RequestTable
from clockwork.telemetry.summary import RunInfo

from support.units import MS, S


def info(duration_ns: int = 5 * S, devices: int = 2, **kw: object) -> RunInfo:
    base: dict[str, object] = {
        "policy": "clockwork",
        "workload": {"name": "unit", "slo_ms": 100, "synthetic": True},
        "duration_ns": duration_ns,
        "devices": devices,
        "models": 3,
        "seed": 7,
        "ideal_capacity_rps": 10.0,
        "sim_wall_s": 0.5,
        "scheduler_cpu_s": 0.0025,
    }
    base.update(kw)
    return RunInfo(**base)  # type: ignore[arg-type]


def known_requests() -> RequestLog:
    """25 requests over 5 s: 15 SUCCESS, 5 LATE, 3 OVERLOADED, 2 DEADLINE_INFEASIBLE.

    The 20 delivered ones (SUCCESS, LATE) have latencies 1..20 ms in a scrambled order; 4 are cold.
    """
    log = RequestLog()
    statuses = ["SUCCESS"] * 15 + ["LATE"] * 5 + ["OVERLOADED"] * 3 + ["DEADLINE_INFEASIBLE"] * 2
    order = [7, 3, 19, 1, 12, 20, 5, 9, 14, 2, 17, 8, 11, 4, 16, 6, 13, 10, 18, 15]
    for i, status in enumerate(statuses):
        arrival = i * 200 * MS
        latency = order[i] * MS if i < 20 else 0
        log.append(
            request_id=i,
            model=f"m{i % 3}",
            arrival_ns=arrival,
            deadline_ns=arrival + 100 * MS,
            response_ns=arrival + latency,
            status=status,
            batch_size=1 if i < 20 else 0,
            action_id=i if i < 20 else -1,
            cold_start=i in (0, 1, 2, 24),
        )
    return log


def known_actions() -> ActionLog:
    """6 SUCCESS Infers (batches 1,1,2,4,4,4; errors 0,+1,-1,+0.5,+2,0 ms), 1 TOO_LATE Infer,
    2 SUCCESS loads (errors +0.3, -0.1 ms), 1 INSUFFICIENT_PAGES load, 1 SUCCESS evict."""
    log = ActionLog()
    aid = 0

    def add(kind: str, batch: int, expected_ns: int, actual_ns: int, status: str) -> None:
        nonlocal aid
        began = aid * 100 * MS if status == "SUCCESS" else -1
        log.append(
            action_id=aid,
            kind=kind,
            device=f"gpu{aid % 2}",
            model="m0",
            batch_size=batch,
            requests=batch,
            sent_ns=aid * 100 * MS,
            earliest_ns=aid * 100 * MS,
            latest_ns=aid * 100 * MS + 10 * MS,
            expected_ns=expected_ns,
            began_ns=began,
            ended_ns=began + actual_ns if began >= 0 else -1,
            actual_ns=actual_ns,
            status=status,
        )
        aid += 1

    for batch, actual in zip(
        (1, 1, 2, 4, 4, 4), (5 * MS, 6 * MS, 4 * MS, 5_500_000, 7 * MS, 5 * MS), strict=True
    ):
        add("Infer", batch, 5 * MS, actual, "SUCCESS")
    add("Infer", 8, 9 * MS, 0, "TOO_LATE")
    add("LoadWeights", 0, 8 * MS, 8_300_000, "SUCCESS")
    add("LoadWeights", 0, 8 * MS, 7_900_000, "SUCCESS")
    add("LoadWeights", 0, 8 * MS, 0, "INSUFFICIENT_PAGES")
    add("EvictWeights", 0, 0, 0, "SUCCESS")
    return log


@pytest.fixture(scope="session")
def make_info() -> Callable[..., RunInfo]:
    """``make_info(**overrides)``: a RunInfo for a 5 s run on 2 devices."""
    return info


@pytest.fixture(scope="session")
def known_tables() -> tuple[RequestTable, ActionTable]:
    """The tables of ``known_requests`` and ``known_actions``."""
    return known_requests().table(), known_actions().table()
