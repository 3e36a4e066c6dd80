"""``clockwork bench-cluster`` end to end: real worker processes, controller, load generator."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clockwork.cli import bench_cluster_cmd
from clockwork.service import bench_cluster
from clockwork.service.bench_cluster import WorkerProcesses, pid_alive


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="clockwork")
    sub = p.add_subparsers(dest="command", required=True)
    bench_cluster_cmd.register(sub)
    return p.parse_args(["bench-cluster", *argv])


def test_bench_cluster_short_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started: list[WorkerProcesses] = []
    original = WorkerProcesses.start

    def spy(self: WorkerProcesses) -> None:
        started.append(self)
        original(self)

    monkeypatch.setattr(bench_cluster.WorkerProcesses, "start", spy)
    out = tmp_path / "run"
    args = parse(
        [
            "--workers",
            "1",
            "--gpus-per-worker",
            "2",
            "--models",
            "10",
            "--workload",
            "poisson",
            "--rate",
            "100",
            "--duration",
            "3",
            "--slo-ms",
            "100",
            "--seed",
            "1",
            "--out",
            str(out),
            "--no-plots",
            "--status-every",
            "1",
            "--drain-s",
            "5",
        ]
    )
    assert args.func(args) == 0
    printed = capsys.readouterr()
    assert "SLO attainment" in printed.out
    assert "workers 1/1" in printed.err  # a status line

    # the workers are gone
    assert len(started) == 1 and len(started[0].pids) == 1
    assert all(p.poll() is not None for p in started[0].procs)
    assert not any(pid_alive(pid) for pid in started[0].pids)

    summary = json.loads((out / "summary.json").read_text())
    for key in (
        "policy",
        "workload",
        "duration_s",
        "devices",
        "models",
        "requests",
        "succeeded",
        "late",
        "refused",
        "slo_attainment",
        "slo_attainment_pct_str",
        "offered_rps",
        "goodput_rps",
        "ideal_capacity_rps",
        "latency_ms",
        "cold_starts",
        "loads",
        "infers",
        "prediction_error",
        "device_utilisation",
        "scheduler_cpu_s",
        "scheduler_cpu_us_per_request",
        "timeseries",
        "extra",
    ):
        assert key in summary, key
    extra = summary["extra"]
    n = summary["requests"]
    assert n > 0 and summary["devices"] == 2 and summary["models"] == 10
    assert extra["submitted"] == n == extra["responses"]  # every request answered
    assert extra["unanswered"] == 0
    assert extra["controller_cpu_s"] > 0 and extra["controller_cpu_us_per_request"] > 0
    assert isinstance(extra["late_submits"], int)
    assert summary["slo_attainment"] > 0.9  # a light load on two emulated V100s

    requests = pq.read_table(out / "requests.parquet").to_pydict()
    ids = requests["request_id"]
    assert len(ids) == n and len(set(ids)) == n  # each answered exactly once
    assert min(requests["arrival_ns"]) >= 0
    assert max(requests["arrival_ns"]) < 3_100_000_000  # relative to the run start
    actions = pq.read_table(out / "actions.parquet").to_pydict()
    kinds = {str(k) for k in actions["kind"]}
    assert {"LoadWeights", "Infer"} <= kinds
    assert (out / "workers" / "worker-w0.log").is_file()


def test_worker_processes_stopped_on_error(tmp_path: Path) -> None:
    procs = WorkerProcesses(2, 1, 2, log_dir=tmp_path)
    with pytest.raises(RuntimeError), procs:
        assert len(procs.pids) == 2
        raise RuntimeError("boom")
    assert all(p.poll() is not None for p in procs.procs)
    assert not any(pid_alive(pid) for pid in procs.pids)
