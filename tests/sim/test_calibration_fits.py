"""The simulator's fits to a real run (``clockwork.sim.calibration``, ``bench/calibrate_sim.py``):
the device's time from the worker's stamps, and the serving host's costs from CPU times."""

from __future__ import annotations

from typing import Any

import pytest

from clockwork.sim.calibration import (
    TAKE_SHARE,
    HostSample,
    fit_drift,
    fit_host,
    fit_noise,
    fit_turnaround,
    fit_turnaround_quantiles,
)
from clockwork.sim.noise import Noise, NoiseConfig


def test_the_noise_is_fitted_on_the_time_the_device_was_held() -> None:
    """The simulated device is busy for its whole drawn duration, inputs and outputs included;
    the worker's ``actual_ns`` is the model's run alone. The fit takes ended - began."""
    actions: list[dict[str, Any]] = [
        {
            "kind": "Infer",
            "status": "SUCCESS",
            "batch_size": 4,
            "began_ns": 1_000_000 * i,
            "ended_ns": 1_000_000 * i + 4_000_000,
            "actual_ns": 3_000_000,
        }
        for i in range(9)
    ]
    actions.append({**actions[0], "status": "LATE_START"})  # not an execution: ignored
    fit = fit_noise(actions)
    assert fit["medians_ns"] == {"4": 4_000_000}
    assert fit["runs"] == {"4": 9}


def run(wall_s: float, requests: int, refused: int, loop_s: float, client_s: float) -> HostSample:
    return HostSample(wall_s, requests, refused, loop_s, 2.0, client_s)


def test_the_host_costs_come_back_from_the_cpu_times() -> None:
    """Loop: 0.1 of a core always, 800 us a request taken, 100 us a refusal; client: 0.05 of a
    core and 200 us a request. The fit finds them (the constant shares as slower jobs)."""
    runs = []
    for wall, requests, refused in ((15, 1_000, 0), (15, 6_000, 0), (16, 12_000, 2_000),
                                    (15, 24_000, 14_000)):  # fmt: skip
        taken = requests - refused
        loop_s = 0.1 * wall + 800e-6 * taken + 100e-6 * refused
        client_s = 0.05 * wall + 200e-6 * requests
        runs.append(run(wall, requests, refused, loop_s, client_s))
    host = fit_host(runs, 2)
    per_request_ns = 800_000 / 0.9
    assert host["take_ns"] == pytest.approx(TAKE_SHARE * per_request_ns, rel=1e-3)
    assert host["answer_ns"] == pytest.approx((1 - TAKE_SHARE) * per_request_ns, rel=1e-3)
    assert host["refuse_ns"] == pytest.approx(100_000 / 0.9, rel=1e-3)
    assert host["client_send_ns"] + host["client_read_ns"] == pytest.approx(
        200_000 / 0.95, rel=1e-3
    )
    # the other threads: 2 s of every 15-16 s run
    assert host["background_cores"] == pytest.approx(2 / 15.25, rel=0.02)
    assert host["cores"] == 2.0


def test_a_cost_the_data_cannot_carry_is_zero_not_negative() -> None:
    """Without a single refusal the refusal's cost is not in the data: it comes out 0, and the
    rest is fitted without it."""
    runs = [run(15, n, 0, 0.2 * 15 + 500e-6 * n, 0.1 * n * 1e-3) for n in (1_000, 5_000, 9_000)]
    host = fit_host(runs, 2)
    assert host["refuse_ns"] == 0
    assert host["take_ns"] + host["answer_ns"] == pytest.approx(500_000 / 0.8, rel=1e-3)


def test_the_drift_is_found_in_executions_that_drift() -> None:
    """Executions every 2 ms for 4 runs of 30 s, drawn by the simulator's own noise with a drift
    (sigma 0.12, tau 1 s) on an independent spread of 0.15: the fit finds the drift's size and
    time within the sampling's spread, and leaves the independent part as sigma; executions that
    do not drift give no drift to speak of."""

    def runs(config: NoiseConfig) -> list[list[dict[str, Any]]]:
        out = []
        for seed in range(4):
            noise = Noise(config, seed)
            actions = []
            for i in range(15_000):
                began = i * 2_000_000
                held = noise.apply(1_000_000, began)
                actions.append(
                    {"kind": "Infer", "status": "SUCCESS", "batch_size": 1, "began_ns": began,
                     "ended_ns": began + held}
                )  # fmt: skip
            out.append(actions)
        return out

    drifting = runs(NoiseConfig("lognormal", sigma=0.15, drift_sigma=0.12, drift_tau_ns=10**9))
    fit = fit_drift(drifting, fit_noise([a for r in drifting for a in r]))
    assert fit["drift_sigma"] == pytest.approx(0.12, rel=0.3)
    assert fit["drift_tau_ns"] == pytest.approx(10**9, rel=0.5)
    assert fit["sigma"] == pytest.approx(0.15, rel=0.2)
    steady = runs(NoiseConfig("lognormal", sigma=0.15))
    plain = fit_drift(steady, fit_noise([a for r in steady for a in r]))
    assert plain["drift_sigma"] < 0.03


def test_the_turnaround_is_the_median_gap_before_an_infer_that_waited() -> None:
    """Only an Infer sent before the one ahead of it on its device ended waited for it; an
    Infer sent to an idle device, or one on another device, says nothing of the turnaround."""

    def infer(device: str, sent: int, began: int, ended: int) -> dict[str, Any]:
        return {"kind": "Infer", "device": device, "sent_ns": sent, "began_ns": began,
                "ended_ns": ended, "status": "SUCCESS"}  # fmt: skip

    actions = [
        infer("w0/0", 0, 10, 1_000),
        infer("w0/0", 500, 1_100, 2_000),  # waited: 100
        infer("w0/0", 900, 2_300, 3_000),  # waited: 300
        infer("w0/0", 5_000, 5_050, 6_000),  # sent to an idle device
        infer("w0/1", 0, 2_900, 3_500),  # another device
        infer("w0/1", 3_000, 3_700, 4_000),  # waited: 200
        {
            "kind": "LoadWeights",
            "device": "w0/0",
            "sent_ns": 0,
            "began_ns": 1,
            "ended_ns": 2,
            "status": "SUCCESS",
        },
    ]
    assert fit_turnaround([actions]) == 200
    assert fit_turnaround([actions[3:5]]) == 0  # none waited
    # each run on its own clock: a second run's Infers are not paired with the first's
    later = [infer("w0/0", 0, 400, 900), infer("w0/0", 100, 1_300, 2_000)]  # waited: 400
    assert fit_turnaround([actions, later]) == 250
    # the whole distribution: the least, the median and the greatest of 100, 200, 300, 400
    quantiles = fit_turnaround_quantiles([actions, later], count=5)
    assert quantiles == [100, 175, 250, 325, 400]
    assert fit_turnaround_quantiles([actions[3:5]]) == []
