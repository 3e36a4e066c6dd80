"""The serving host in the simulator (``clockwork.sim.host``): the loop's and the client's CPU per
request, and the door's limits, between the workload and the scheduler."""

from __future__ import annotations

import json
from collections import Counter
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clockwork.cli.sim_cmd import host_config_from_file
from clockwork.core.errors import ConfigurationError
from clockwork.core.policies import make_policy
from clockwork.frontend.limits import DoorLimits
from clockwork.sim.host import HostConfig
from clockwork.sim.noise import NoiseConfig
from clockwork.sim.runner import SimConfig, SimResult, Simulation

from support.sim import SkewedPoisson, answered_once, model_set, small_kind
from support.units import MS, US, S

#: a door that never refuses: the host's costs alone
OPEN_DOOR = DoorLimits(adaptive_inflight=False, queue_delay_target_s=0.0)


def run(
    host: HostConfig | None,
    rate: float = 300.0,
    slo_ms: int = 100,
    seed: int = 3,
    n_models: int = 4,
    gpus: int = 2,
) -> tuple[SimResult, SkewedPoisson]:
    kind = small_kind(40)
    models = model_set(n_models, kind)
    wl = SkewedPoisson([m.name for m in models], rate, S, slo_ms * MS, seed)
    cfg = SimConfig(
        duration_ns=S,
        gpus=gpus,
        device_kind=kind,
        noise=NoiseConfig(kind="lognormal", sigma=0.05),
        seed=seed,
        drain_ns=30 * S,
        host=host,
    )
    return Simulation(cfg, models, wl, make_policy("clockwork")).run(), wl


def statuses(result: SimResult) -> Counter[str]:
    req = result.requests.table()
    return Counter(np.array(req.status_names)[req.status].tolist())


def test_a_host_that_costs_nothing_changes_nothing() -> None:
    """Zero costs and a door that never refuses: every request reaches the scheduler when it
    arrives and the client has each answer when the scheduler gives it, as without a host."""
    free = HostConfig(0, 0, 0, door=OPEN_DOOR)
    plain, _ = run(None)
    hosted, _ = run(free)
    a, b = plain.requests.table(), hosted.requests.table()
    assert len(a) == len(b) > 200
    order_a, order_b = np.argsort(a.request_id), np.argsort(b.request_id)
    assert (a.status[order_a] == b.status[order_b]).all()
    assert (a.response_ns[order_a] == b.response_ns[order_b]).all()
    assert (a.deadline_ns[order_a] == b.deadline_ns[order_b]).all()


def test_a_loop_slower_than_the_arrivals_is_what_limits_goodput() -> None:
    """At 1 ms of loop time per request, no more than 1,000 requests a second can be taken, however
    fast the devices: offered 1,500, the goodput stays under 1,000 and the door refuses the
    surplus (its queue-delay gate and its adaptive limit, as ``serve``'s)."""
    slow = HostConfig(take_ns=800 * US, answer_ns=200 * US, refuse_ns=50 * US)
    result, _ = run(slow, rate=1500.0, gpus=6)
    counts = statuses(result)
    assert counts["SUCCESS"] < 1000
    assert counts["OVERLOADED"] > 300
    baseline = statuses(run(None, rate=1500.0, gpus=6)[0])
    assert baseline["SUCCESS"] > counts["SUCCESS"] + 300


def test_an_answer_the_client_reads_after_the_deadline_is_late() -> None:
    """The server answers in time, but the client needs 120 ms to read each answer: every
    result reaches it past its 100 ms deadline, and the log says LATE, not SUCCESS."""
    slow_reader = HostConfig(0, 0, 0, client_read_ns=120 * MS, door=OPEN_DOOR)
    result, _ = run(slow_reader, rate=20.0)
    counts = statuses(result)
    assert counts["LATE"] > 10 and counts["SUCCESS"] == 0
    req = result.requests.table()
    # the times are the client's: sent at arrival, read 120 ms after the server's answer at least
    assert (req.response_ns - req.arrival_ns >= 120 * MS).all()


def _infers(result: SimResult) -> list[tuple[int, int, int, int, str]]:
    """(device, began, ended, sent, status) of every Infer, by device and start."""
    act = result.actions.table()
    kinds = np.array(act.kind_names)[act.kind]
    names = np.array(act.status_names)[act.status]
    rows = [
        (int(act.device[i]), int(act.began_ns[i]), int(act.ended_ns[i]), int(act.sent_ns[i]),
         str(names[i]))
        for i in range(len(act))
        if kinds[i] == "Infer"
    ]  # fmt: skip
    return sorted(rows)


def _waited(result: SimResult) -> list[int]:
    """How long after the one ahead of it ended each Infer that waited for it started."""
    return [
        b[1] - a[2]
        for a, b in pairwise(_infers(result))
        if a[0] == b[0] and a[4] == "SUCCESS" and b[4] == "SUCCESS" and b[3] <= a[2]
    ]


@pytest.mark.parametrize("turnaround_us", [0, 300])
def test_the_worker_turnaround_holds_back_an_infer_queued_behind_another(
    turnaround_us: int,
) -> None:
    """An Infer sent before the one ahead of it on its device ended starts the worker's
    turnaround after that end, never sooner; with none, it starts at the end."""
    host = HostConfig(0, 0, 0, door=OPEN_DOOR, worker_turnaround_ns=turnaround_us * US)
    result, _ = run(host, rate=1500.0, gpus=1)
    waited = _waited(result)
    assert len(waited) > 50
    assert min(waited) == turnaround_us * US
    if turnaround_us:
        # it costs device time: fewer answered in time than with none at this overload
        free = statuses(run(HostConfig(0, 0, 0, door=OPEN_DOOR), rate=1500.0, gpus=1)[0])
        assert statuses(result)["SUCCESS"] < free["SUCCESS"]


def test_turnarounds_drawn_from_quantiles_hold_back_each_infer_by_one_of_them() -> None:
    """With the turnaround's quantiles (300 us to 2 ms), an Infer that waited starts at least
    300 us and at most 2 ms after the one ahead ended, the gaps spread between, and fewer are
    answered in time than with the constant 300 us."""
    quantiles = (300 * US, 600 * US, 2_000 * US)
    host = HostConfig(0, 0, 0, door=OPEN_DOOR, worker_turnaround_quantiles_ns=quantiles)
    result, _ = run(host, rate=1500.0, gpus=1)
    waited = _waited(result)
    assert len(waited) > 30
    assert min(waited) >= 300 * US and max(waited) <= 2_000 * US
    assert len(set(waited)) > 10
    constant = HostConfig(0, 0, 0, door=OPEN_DOOR, worker_turnaround_ns=300 * US)
    fixed = statuses(run(constant, rate=1500.0, gpus=1)[0])
    assert statuses(result)["SUCCESS"] < fixed["SUCCESS"]


def test_a_negative_turnaround_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        HostConfig(0, 0, 0, worker_turnaround_ns=-1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    take_us=st.integers(0, 3000),
    answer_us=st.integers(0, 1000),
    refuse_us=st.integers(0, 500),
    client_us=st.integers(0, 2000),
    background=st.sampled_from([0.0, 0.5]),
    rate=st.floats(50, 2000),
    slo_ms=st.sampled_from([15, 50, 100]),
    seed=st.integers(0, 1000),
    adaptive=st.booleans(),
    turnaround_us=st.sampled_from([0, 0, 150, 2000]),
)
def test_every_request_is_answered_once_through_the_host(
    take_us: int,
    answer_us: int,
    refuse_us: int,
    client_us: int,
    background: float,
    rate: float,
    slo_ms: int,
    seed: int,
    adaptive: bool,
    turnaround_us: int,
) -> None:
    host = HostConfig(
        take_us * US,
        answer_us * US,
        refuse_us * US,
        client_us * US,
        client_us * US,
        background_cores=background,
        door=DoorLimits(adaptive_inflight=adaptive),
        worker_turnaround_ns=turnaround_us * US,
    )
    result, wl = run(host, rate=rate, slo_ms=slo_ms, seed=seed)
    # in time as the client saw it: sent at arrival, read by the deadline
    answered_once(result, wl.generated)
    req = result.requests.table()
    assert (req.deadline_ns - req.arrival_ns == slo_ms * MS).all()
    assert (req.response_ns >= req.arrival_ns).all()


def test_host_file(tmp_path: Path) -> None:
    good = tmp_path / "host.json"
    good.write_text(json.dumps({"take_ns": 600_000, "answer_ns": 250_000, "refuse_ns": 90_000}))
    host = host_config_from_file(good)
    assert (host.take_ns, host.cores, host.door) == (600_000, 2.0, DoorLimits())
    assert host.worker_turnaround_ns == 0
    turn = tmp_path / "turn.json"
    turn.write_text(json.dumps({**json.loads(good.read_text()), "worker_turnaround_ns": 52_000}))
    assert host_config_from_file(turn).worker_turnaround_ns == 52_000
    drawn = tmp_path / "drawn.json"
    drawn.write_text(
        json.dumps({**json.loads(good.read_text()), "worker_turnaround_quantiles_ns": [0, 9, 90]})
    )
    assert host_config_from_file(drawn).worker_turnaround_quantiles_ns == (0, 9, 90)
    for bad, words in (
        ({"take_ns": 1}, "take_ns, answer_ns and refuse_ns"),
        ({"take_ns": 1, "answer_ns": 1, "refuse_ns": 1, "speed": 3}, "optionally"),
        ({"take_ns": -1, "answer_ns": 1, "refuse_ns": 1}, ">= 0"),
        ({"take_ns": 1, "answer_ns": 1, "refuse_ns": 1, "worker_turnaround_ns": -5}, ">= 0"),
        ({"take_ns": 1, "answer_ns": 1, "refuse_ns": 1, "cores": 0.5}, "cores >= 1"),
        (
            {
                "take_ns": 1,
                "answer_ns": 1,
                "refuse_ns": 1,
                "worker_turnaround_quantiles_ns": [5, 4],
            },
            "must not decrease",
        ),
        (
            {"take_ns": 1, "answer_ns": 1, "refuse_ns": 1, "worker_turnaround_quantiles_ns": 5},
            "--host",
        ),
    ):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(ConfigurationError, match="--host") as e:
            host_config_from_file(path)
        assert words in str(e.value)
    with pytest.raises(ConfigurationError, match="No such file"):
        host_config_from_file(tmp_path / "missing.json")
