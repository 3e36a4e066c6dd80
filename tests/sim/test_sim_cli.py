"""``clockwork sim`` end to end on small runs, and its refusals of impossible configurations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clockwork.cli.main import main

SMALL = ["sim", "--models", "20", "--gpus", "2", "--duration", "2", "--quiet", "--seed", "3"]


def test_sim_writes_a_full_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main([*SMALL, "--workload", "poisson", "--load-factor", "0.2", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in (
        "requests",
        "slo_attainment",
        "goodput_rps",
        "offered_rps",
        "latency_ms",
        "refused",
        "cold_starts",
        "loads",
        "evictions",
        "prediction_error",
        "sim_wall_s",
        "sim_requests_per_wall_s",
    ):
        assert key in summary, key
    assert summary["requests"] > 0
    assert summary["policy"] == "clockwork"
    assert summary["extra"]["samples"]["pending"]
    for name in (
        "requests.parquet",
        "actions.parquet",
        "latency_cdf.png",
        "batch_sizes.png",
        "goodput_latency_over_time.png",
        "prediction_error.png",
    ):
        assert (out / name).stat().st_size > 0, name
    assert "SLO attainment" in capsys.readouterr().out


def test_compare_runs_both_policies_on_the_same_arrivals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    assert (
        main(
            [
                *SMALL,
                "--workload",
                "poisson",
                "--load-factor",
                "0.3",
                "--no-plots",
                "--compare",
                "clockwork,reactive",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    a = json.loads((out / "clockwork" / "summary.json").read_text())
    b = json.loads((out / "reactive" / "summary.json").read_text())
    assert a["requests"] == b["requests"] > 0
    table = capsys.readouterr().out
    assert "clockwork" in table and "reactive" in table
    assert json.loads((out / "comparison.json").read_text()).keys() == {"clockwork", "reactive"}


def test_azure_replay_from_a_small_trace(tmp_path: Path) -> None:
    trace = tmp_path / "inv.csv"
    header = "HashOwner,HashApp,HashFunction,Trigger," + ",".join(str(480 + i) for i in range(3))
    rows = [
        f"o{i},a{i},f{i},http," + ",".join(str(10 * (i + 1) + j) for j in range(3))
        for i in range(5)
    ]
    trace.write_text("\n".join([header, *rows]) + "\n")
    out = tmp_path / "az"
    assert (
        main(
            [
                *SMALL,
                "--workload",
                "azure",
                "--trace",
                str(trace),
                "--minute-s",
                "1",
                "--load-factor",
                "0.2",
                "--no-plots",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["workload"]["trace_path"].endswith("inv.csv")
    assert summary["workload"]["synthetic"] is False
    assert summary["requests"] > 0


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--gpus", "0"], "at least one GPU"),
        (["--models", "0"], "--models"),
        (["--duration", "-1"], "--duration"),
        (["--workload", "azure", "--trace", "/nonexistent/inv.csv"], "/nonexistent/inv.csv"),
        (["--profile", "no-such-profile"], "no shipped profile"),
        (["--noise-sigma", "-1"], "sigma"),
        (["--slow-devices", "3"], "slow devices"),
        (["--slow-devices", "1", "--slow-factor", "0"], "slow devices"),
    ],
)
def test_impossible_configurations_are_refused_clearly(
    extra: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*SMALL, *extra]) == 2
    err = capsys.readouterr().err
    assert needle in err and "error" in err


def test_malformed_trace_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text("HashOwner,HashApp,HashFunction,Trigger,480,481\no,a,f,http,1,-2\n")
    assert main([*SMALL, "--workload", "azure", "--trace", str(trace)]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and "line 2" in err


def test_model_larger_than_a_device_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clockwork.core.profile import save_profile, shipped_profile

    p = shipped_profile("resnet50_v2-V100-32GB")
    big = type(p)(
        **{
            **{f: getattr(p, f) for f in p.__dataclass_fields__},
            "weights_pages": 2000,
            "weights_bytes": 2000 * p.page_size_bytes,
        }
    )
    path = tmp_path / "big.json"
    save_profile(big, path)
    assert main([*SMALL, "--profile", str(path)]) == 2
    assert "needs 2000 pages" in capsys.readouterr().err


def test_profile_of_another_device_kind_needs_its_cache_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clockwork.core.profile import save_profile, shipped_profile

    p = shipped_profile("resnet50_v2-V100-32GB")
    cpu = type(p)(**{**{f: getattr(p, f) for f in p.__dataclass_fields__}, "device_kind": "cpu"})
    path = tmp_path / "cpu.json"
    save_profile(cpu, path)
    assert main([*SMALL, "--profile", str(path)]) == 2
    assert "--cache-pages" in capsys.readouterr().err
    out = tmp_path / "run"
    assert (
        main(
            [*SMALL, "--profile", str(path), "--cache-pages", "20", "--no-plots", "--out", str(out)]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["extra"]["device_kind"] == {
        "name": "cpu",
        "page_size_bytes": 16 << 20,
        "cache_pages": 20,
    }


def test_compare_checks_every_policy_name_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp"
    code = main([*SMALL, "--compare", "clockwork,nope,reactive,worse", "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "'worse'" in err and "clockwork, reactive" in err
    assert not out.exists()  # nothing ran, not even the first (known) policy


def test_per_device_estimates_are_off_unless_asked_for(tmp_path: Path) -> None:
    for flags, expected in (((), False), (("--per-device-estimates",), True)):
        out = tmp_path / str(expected)
        assert main([*SMALL, "--load-factor", "0.2", "--no-plots", *flags, "--out", str(out)]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["extra"]["per_device_estimates"] is expected
        assert summary["requests"] > 0


def test_slow_devices_run_their_factor_slower(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    flags = ["--load-factor", "0.3", "--no-plots", "--noise", "none"]
    assert (
        main([*SMALL, *flags, "--slow-devices", "1", "--slow-factor", "3", "--out", str(tmp_path)])
        == 0
    )
    actions = pq.read_table(tmp_path / "actions.parquet").to_pydict()
    took: dict[tuple[str, int], set[int]] = {}
    for kind, device, batch, actual in zip(
        actions["kind"], actions["device"], actions["batch_size"], actions["actual_ns"], strict=True
    ):
        if kind == "Infer":
            took.setdefault((device, batch), set()).add(actual)
    fast, slow = took[("w0/1", 1)], took[("w0/0", 1)]
    assert len(fast) == len(slow) == 1 and slow == {3 * d for d in fast}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["extra"]["slow_devices"], summary["extra"]["slow_factor"]) == (1, 3.0)
