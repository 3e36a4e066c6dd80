"""A seeded simulation whose summary must not change unnoticed.

If a change to the scheduler or simulator is meant to change behaviour, regenerate with
``CLOCKWORK_UPDATE_GOLDEN=1 pytest tests/sim/test_golden.py`` and explain the change in the commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from clockwork.core.policies import make_policy
from clockwork.sim.noise import NoiseConfig
from clockwork.sim.runner import SimConfig, Simulation
from clockwork.telemetry.summary import RunInfo, summarize
from clockwork.workload import PoissonOpenLoop

from support.sim import model_set, small_kind
from support.units import MS, S

GOLDEN = Path(__file__).with_name("golden_small.json")
KEYS = (
    "requests",
    "succeeded",
    "late",
    "refused",
    "cold_starts",
    "loads",
    "evictions",
    "infers",
    "batch_sizes",
    "latency_ms",
    "slo_attainment",
    "actions_by_status",
)


def run(policy: str) -> dict[str, object]:
    kind = small_kind(30)  # room for 4 of the 12 models per device: loads and evictions
    models = model_set(12, kind)
    weights = [1 / (i + 1) for i in range(12)]
    wl = PoissonOpenLoop([m.name for m in models], 700.0, 3 * S, 60 * MS, 7, weights)
    cfg = SimConfig(
        duration_ns=3 * S,
        gpus=2,
        device_kind=kind,
        noise=NoiseConfig("lognormal+straggler", 0.02, 0.01, 2.0),
        seed=7,
    )
    result = Simulation(cfg, models, wl, make_policy(policy)).run()
    info = RunInfo(policy, {"name": "poisson"}, cfg.duration_ns, 2, 12, 7, 1.0, 0.0)
    summary = summarize(result.requests.table(), result.actions.table(), info)
    rounded: dict[str, object] = json.loads(json.dumps({k: summary[k] for k in KEYS}))
    return rounded


@pytest.mark.parametrize("policy", ["clockwork", "reactive"])
def test_golden_summary(policy: str) -> None:
    got = run(policy)
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if os.environ.get("CLOCKWORK_UPDATE_GOLDEN"):
        golden[policy] = got
        GOLDEN.write_text(json.dumps(golden, indent=2, sort_keys=True) + "\n")
    assert policy in golden, f"no golden summary for {policy}: run with CLOCKWORK_UPDATE_GOLDEN=1"
    assert got == golden[policy]


def test_same_seed_same_run() -> None:
    assert run("clockwork") == run("clockwork")
