"""``clockwork sim --as-served``: the simulator's Clockwork policy configured as ``clockwork
serve`` configures it, so that a simulated run can be held against a real server's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clockwork.cli.main import build_parser, main
from clockwork.cli.policy_args import DEFAULT_ADMISSION_LEVEL, policy_from_warm_args
from clockwork.cli.sim_cmd import run as run_sim
from clockwork.core.policies import SIMULATED_ROOM_NS, SIMULATED_SCHEDULE_AHEAD_NS, PolicyBase
from clockwork.core.policies.clockwork import ClockworkConfig, ClockworkPolicy

SMALL = ["sim", "--models", "8", "--gpus", "1", "--duration", "2", "--quiet", "--seed", "5"]


def _config(policy: PolicyBase) -> ClockworkConfig:
    assert isinstance(policy, ClockworkPolicy)
    return policy.config


def _simulated_policy(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> ClockworkConfig:
    """The config of the policy ``clockwork sim argv`` runs (the run itself skipped)."""
    made: list[PolicyBase] = []

    class CapturedError(Exception):
        pass

    def capture(config: object, models: object, workload: object, policy: PolicyBase, *a: object,
                **k: object) -> object:  # fmt: skip
        made.append(policy)
        raise CapturedError

    monkeypatch.setattr("clockwork.cli.sim_cmd.Simulation", capture)
    args = build_parser(argv).parse_args(argv)
    with pytest.raises(CapturedError):
        run_sim(args)
    return _config(made[0])


def test_as_served_is_the_serving_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    served = _config(policy_from_warm_args(build_parser(["serve"]).parse_args(["serve"])))
    simulated = _simulated_policy([*SMALL, "--as-served"], monkeypatch)
    # the whole configuration (serve's models to warm first are a restart's: none here)
    assert simulated == served
    assert simulated.warm_start and simulated.backlog_admission
    assert simulated.estimator.level == DEFAULT_ADMISSION_LEVEL
    assert simulated.estimator.per_device_estimates
    assert simulated.schedule_ahead_ns == ClockworkConfig().schedule_ahead_ns


def test_the_default_is_the_papers_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _simulated_policy(SMALL, monkeypatch)
    assert not cfg.warm_start and not cfg.backlog_admission
    assert cfg.estimator.level == 0.0 and not cfg.estimator.per_device_estimates
    assert cfg.schedule_ahead_ns == SIMULATED_SCHEDULE_AHEAD_NS


def test_the_default_horizon_covers_a_slow_links_round_trip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 2 ms each way: an action planned 1 ms ahead would reach its worker after its start
    cfg = _simulated_policy([*SMALL, "--network-delay-us", "2000"], monkeypatch)
    assert cfg.schedule_ahead_ns == 4_000_000 + SIMULATED_ROOM_NS
    # a fast link keeps the floor
    cfg = _simulated_policy([*SMALL, "--network-delay-us", "10"], monkeypatch)
    assert cfg.schedule_ahead_ns == SIMULATED_SCHEDULE_AHEAD_NS


def test_explicit_options_win(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = [*SMALL, "--as-served", "--admission-level", "0.5", "--schedule-ahead-ms", "3"]
    cfg = _simulated_policy(argv, monkeypatch)
    assert cfg.estimator.level == 0.5 and cfg.schedule_ahead_ns == 3_000_000
    assert cfg.warm_start
    assert (
        _simulated_policy([*SMALL, "--admission-level", "0.5"], monkeypatch).estimator.level == 0.5
    )


def test_a_bad_level_is_refused_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SMALL, "--as-served", "--admission-level", "1.5"]) != 0
    assert "level" in capsys.readouterr().err


def test_the_report_names_the_level_used(tmp_path: Path) -> None:
    for flag, level in (([], 0.0), (["--as-served"], DEFAULT_ADMISSION_LEVEL)):
        out = tmp_path / str(level)
        argv = [*SMALL, *flag, "--workload", "poisson", "--rate", "5", "--out", str(out)]
        assert main([*argv, "--no-plots"]) == 0
        extra = json.loads((out / "summary.json").read_text())["extra"]
        assert extra["admission_level"] == level and extra["as_served"] == bool(flag)


def test_as_served_warms_every_model_before_any_asks(tmp_path: Path) -> None:
    # about two requests in all: the paper's policy loads what they ask for, a served one
    # loads all eight models at start, as `clockwork serve` does
    loads = {}
    for flag in ([], ["--as-served"]):
        out = tmp_path / ("served" if flag else "paper")
        argv = [*SMALL, *flag, "--workload", "poisson", "--rate", "1", "--out", str(out)]
        assert main([*argv, "--no-plots"]) == 0
        loads[bool(flag)] = json.loads((out / "summary.json").read_text())["loads"]
    assert loads[True] == 8
    assert loads[False] <= 3
