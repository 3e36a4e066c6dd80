"""The client's own run and run-queue times, and the warning its report gives when it waited."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from clockwork.client.bench import STARVED_SHARE, format_bench_lines
from clockwork.client.cpu_wait import CpuWait, cpu_wait


def _tasks(tmp_path: Path, *stats: str) -> Path:
    for i, text in enumerate(stats):
        (tmp_path / str(100 + i)).mkdir()
        (tmp_path / str(100 + i) / "schedstat").write_text(text)
    return tmp_path


def test_the_threads_times_are_summed(tmp_path: Path) -> None:
    tasks = _tasks(tmp_path, "5000 700 12\n", "3000 300 4\n")
    assert cpu_wait(tasks) == CpuWait(run_ns=8000, wait_ns=1000)
    assert CpuWait(8000, 1000) - CpuWait(5000, 400) == CpuWait(3000, 600)


def test_no_statistics_is_none_not_zero(tmp_path: Path) -> None:
    assert cpu_wait(tmp_path / "absent") is None
    assert cpu_wait(_tasks(tmp_path, "5000\n")) is None


@pytest.mark.skipif(sys.platform != "linux", reason="Linux's per-thread schedstat")
def test_this_process_running_is_counted() -> None:
    before = cpu_wait()
    assert before is not None
    end = time.thread_time() + 0.05
    while time.thread_time() < end:
        pass
    after = cpu_wait()
    assert after is not None
    assert (after - before).run_ns >= 40_000_000
    assert (after - before).wait_ns >= 0


def _summary(waited: float | None, wall: float) -> dict[str, object]:
    return {
        "url": "http://127.0.0.1:8000",
        "protocol": "http",
        "model_mapping": {"source": "index", "models": ["m"]},
        "late_submits": 0,
        "client_dropped": 0,
        "client_errors": 0,
        "sim_wall_s": wall,
        "extra": {"client_cpu_wait_s": waited},
    }


def test_a_client_that_waited_for_a_core_says_so() -> None:
    text = format_bench_lines(_summary(11.0, 20.5))
    assert "waited 11.0 s of the run's 20.5 s for a CPU core" in text
    assert "read late" in text


@pytest.mark.parametrize("waited", [None, 0.0, STARVED_SHARE * 20.0])
def test_a_client_that_had_its_cores_says_nothing(waited: float | None) -> None:
    assert "warning" not in format_bench_lines(_summary(waited, 20.0))
