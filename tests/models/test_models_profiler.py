"""The profiler measures with the torch backend and writes profiles ``load_profile`` reads."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from clockwork.cli import profile_cmd
from clockwork.core.errors import InvalidInputError
from clockwork.core.profile import load_profile
from clockwork.models.packing import pack_tensors
from clockwork.models.repository import ModelRepository
from clockwork.worker.profiler import (
    MEASURED_BY,
    percentile_ns,
    profile_model,
    profile_repository,
    profile_table,
    sample_inputs,
    stats,
)

FAST: dict[str, Any] = {"runs": 4, "warmup": 1, "loads": 2}


def test_percentiles_are_nearest_rank() -> None:
    values = list(range(100, 0, -1))  # 1..100, unsorted
    assert percentile_ns(values, 50) == 50
    assert percentile_ns(values, 99) == 99
    assert percentile_ns(values, 100) == 100
    assert percentile_ns([7], 99) == 7
    assert percentile_ns([1, 2, 3, 1000], 99) == 1000
    s = stats([3, 1, 2])
    assert (s.runs, s.p50_ns, s.p99_ns, s.max_ns) == (3, 2, 3, 3)
    with pytest.raises(InvalidInputError):
        percentile_ns([], 50)


def test_profile_model_covers_every_batch_size(tiny_repo: Path) -> None:
    repo = ModelRepository(tiny_repo)
    profile = profile_model(repo, "transformer-0000", **FAST)
    config = repo.load_config("transformer-0000")
    plan = pack_tensors(repo.load_weights("transformer-0000", 1), 16 << 20)
    assert profile.batch_sizes == config.batch_sizes
    assert profile.device_kind == "cpu"
    assert profile.weights_bytes == plan.total_bytes
    assert profile.weights_pages == plan.num_pages
    assert profile.input_bytes == config.input_bytes == 8 * 8
    assert profile.output_bytes == config.output_bytes == 3 * 4
    assert profile.measured.by == MEASURED_BY
    assert "torch" in profile.measured.where and "1 thread" in profile.measured.where
    assert "p99" in profile.measured.how
    table = profile.extra["exec"]
    assert set(table) == {str(b) for b in config.batch_sizes}
    for b, row in table.items():
        assert row["runs"] == FAST["runs"]
        assert 0 < row["p50_ns"] <= row["p99_ns"] <= row["max_ns"]
        assert profile.exec_ns[int(b)] == row["p99_ns"]
    load = profile.extra["load"]
    assert load["runs"] == FAST["loads"]
    assert profile.load_ns == load["p99_ns"] > 0
    assert "transformer-0000" in profile_table(profile)


def test_profile_repository_writes_readable_profiles(tiny_repo: Path) -> None:
    repo = ModelRepository(tiny_repo)
    names = ["transformer-0000", "transformer-0001"]
    written = profile_repository(repo, "cpu", models=names, **FAST)
    assert set(written) == set(names)
    for name in names:
        profile, path = written[name]
        assert path == tiny_repo / name / "profile-cpu.json"
        back = load_profile(path)
        assert back == profile
        assert back.model == name
        assert back.batch_sizes == repo.load_config(name).batch_sizes
        assert json.loads(path.read_text())["extra"]["statistic"] == "p99"
    # same architecture and parameters: measured once, the copy says so
    first, second = written["transformer-0000"][0], written["transformer-0001"][0]
    assert second.exec_ns == first.exec_ns
    assert "measured on transformer-0000" in second.measured.how
    # the repository still scans cleanly with profiles beside the configs
    assert set(repo.scan()) >= set(names)
    assert repo.scan_errors() == []


def test_bad_arguments(tiny_repo: Path) -> None:
    repo = ModelRepository(tiny_repo)
    with pytest.raises(InvalidInputError, match="runs"):
        profile_model(repo, "transformer-0000", runs=0)
    with pytest.raises(InvalidInputError, match=r"batch sizes \[3\]"):
        profile_model(repo, "transformer-0000", batch_sizes=[3], **FAST)


def test_sample_inputs_are_valid_requests(tiny_repo: Path) -> None:
    config = ModelRepository(tiny_repo).load_config("transformer-0000")
    requests = sample_inputs(config, 5)
    assert len(requests) == 5
    for r in requests:
        ids = r["input_ids"]
        assert ids.dtype.name == "int64" and ids.shape == (8,)
        assert ids.min() >= 0 and ids.max() < 50


def test_cli_profiles_selected_models_into_out(
    tiny_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="clockwork")
    profile_cmd.register(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "profiles"
    args = parser.parse_args(
        [
            "profile",
            str(tiny_repo),
            "--models",
            "transformer-0001",
            "--runs",
            "3",
            "--warmup",
            "0",
            "--loads",
            "1",
            "--threads",
            "1",
            "--out",
            str(out),
        ]
    )
    assert args.func(args) == 0
    path = out / "transformer-0001" / "profile-cpu.json"
    assert load_profile(path).model == "transformer-0001"
    assert not (tiny_repo / "transformer-0001" / "profile-cpu.json").exists()
    printed = capsys.readouterr().out
    assert "transformer-0001 on cpu" in printed and "p99 ms" in printed
    with pytest.raises(SystemExit):
        parser.parse_args(["profile", str(tiny_repo), "--runs", "0"])
