"""Where per-device estimates are on by default (the serving commands and the emulated cluster)
and where off (the simulator), and the flags that turn them the other way."""

from __future__ import annotations

from pathlib import Path

from clockwork.cli.config_file import apply_config
from clockwork.cli.main import build_parser
from clockwork.cli.policy_args import policy_from_args, policy_from_warm_args
from clockwork.core.policies import make_policy


def test_serving_commands_default_on_and_the_simulator_off() -> None:
    def estimator(argv: list[str], serving: bool) -> bool:
        args = build_parser(argv).parse_args(argv)
        policy = policy_from_warm_args(args) if serving else policy_from_args("clockwork", args)
        return policy.per_device_estimates

    assert estimator(["serve"], serving=True)
    assert not estimator(["serve", "--no-per-device-estimates"], serving=True)
    assert estimator(["controller"], serving=True)
    assert not estimator(["controller", "--no-per-device-estimates"], serving=True)
    bench = ["bench-cluster", "--schedule-ahead-ms", "10"]  # (its command fills in the default)
    assert estimator(bench, serving=False)
    assert not estimator([*bench, "--no-per-device-estimates"], serving=False)
    assert not estimator(["sim"], serving=False)
    assert estimator(["sim", "--per-device-estimates"], serving=False)
    assert not make_policy("clockwork").per_device_estimates
    assert make_policy("reactive", per_device_estimates=True).per_device_estimates


def test_a_config_file_key_means_what_the_flag_means(tmp_path: Path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text("no-per-device-estimates = true\n")
    argv = ["serve", "--config", str(path)]
    args = build_parser(argv).parse_args(argv)
    apply_config(args)
    assert not policy_from_warm_args(args).per_device_estimates
    path.write_text("no-per-device-estimates = false\n")
    args = build_parser(argv).parse_args(argv)
    apply_config(args)
    assert policy_from_warm_args(args).per_device_estimates
