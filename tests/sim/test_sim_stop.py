"""A simulation asked to stop (``should_stop``, as Ctrl-C asks) ends early with consistent logs:
every request it accepted has one row, those not yet answered as UNANSWERED."""

from __future__ import annotations

from clockwork.core.policies import ClockworkConfig, ClockworkPolicy
from clockwork.sim.runner import SimConfig, Simulation
from clockwork.telemetry.records import UNANSWERED

from support.sim import SkewedPoisson, model_set, small_kind
from support.units import MS, S


def _sim(stop_after_checks: int | None) -> tuple[Simulation, list[int]]:
    kind = small_kind(64)
    models = model_set(8, kind)
    workload = SkewedPoisson([m.name for m in models], 300, 600 * S, 100 * MS, seed=4)
    config = SimConfig(duration_ns=600 * S, gpus=2, device_kind=kind)
    checks: list[int] = []

    def should_stop() -> bool:
        checks.append(1)
        return stop_after_checks is not None and len(checks) >= stop_after_checks

    sim = Simulation(
        config, models, workload, ClockworkPolicy(ClockworkConfig()), None, should_stop
    )
    return sim, checks


def test_stop_ends_the_run_early_with_whole_logs() -> None:
    sim, checks = _sim(stop_after_checks=1)
    result = sim.run()
    assert result.interrupted and len(checks) == 1
    assert result.end_ns < 600 * S  # far from the ten minutes asked for
    table = result.requests.table()
    statuses = [table.status_names[s] for s in table.status]
    assert statuses.count(UNANSWERED) == result.unanswered
    assert len(table) == result.responses + result.unanswered
    assert sorted(table.request_id.tolist()) == list(range(len(table)))


def test_a_run_never_asked_to_stop_is_not_interrupted() -> None:
    kind = small_kind(64)
    models = model_set(4, kind)
    workload = SkewedPoisson([m.name for m in models], 200, 2 * S, 100 * MS, seed=1)
    config = SimConfig(duration_ns=2 * S, gpus=2, device_kind=kind)
    result = Simulation(
        config, models, workload, ClockworkPolicy(ClockworkConfig()), None, lambda: False
    ).run()
    assert not result.interrupted and result.unanswered == 0
