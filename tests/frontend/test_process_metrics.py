"""The ``process_*`` metrics beside the ``clockwork_*`` ones, parsed back with prometheus_client's
text parser: the controller's always, a watched child's while it runs, values that move with what
the process does."""

from __future__ import annotations

import gc
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from clockwork.frontend.metrics import ServingMetrics

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

NAMES = {
    "process_cpu_seconds": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_virtual_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
    "process_start_time_seconds": "gauge",
}


def scrape(metrics: ServingMetrics) -> dict[tuple[str, str], float]:
    """(sample name, process label) -> value of every process_* sample, and the family types."""
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(metrics.metrics_text().decode()):
        if family.name.startswith("process_"):
            assert NAMES[family.name] == family.type, family.name
            for s in family.samples:
                assert set(s.labels) == {"process"}
                out[(s.name, s.labels["process"])] = s.value
    return out


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
    )
    # its interpreter is up (and has its memory) before the test reads it: scraped right
    # after the fork, a child still held only its exec stub (430 KB)
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    yield proc
    proc.kill()
    proc.wait()
    proc.stdout.close()


def _burn_cpu(seconds: float) -> None:
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x += 1


def test_the_controller_s_process_metrics_are_there_and_sane() -> None:
    metrics = ServingMetrics()
    before = scrape(metrics)
    names = {name for name, _ in before}
    assert names == {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    }
    assert {proc for _, proc in before} == {"controller"}
    rss = before[("process_resident_memory_bytes", "controller")]
    assert 10 * 2**20 < rss < before[("process_virtual_memory_bytes", "controller")]
    started = before[("process_start_time_seconds", "controller")]
    assert time.time() - 24 * 3600 < started <= time.time() + 1
    assert (
        0 < before[("process_open_fds", "controller")] <= before[("process_max_fds", "controller")]
    )

    # CPU time counts the CPU spent
    cpu_before = before[("process_cpu_seconds_total", "controller")]
    _burn_cpu(0.3)
    assert scrape(metrics)[("process_cpu_seconds_total", "controller")] >= cpu_before + 0.25
    # open files count the files opened. The count is the process's: another thread (a server
    # an earlier test left stopping, a socket's finalizer) may close files meanwhile, so the
    # collector runs first and a few tries are allowed
    gc.collect()
    grew = []
    for _ in range(5):
        fds_before = scrape(metrics)[("process_open_fds", "controller")]
        with (
            tempfile.TemporaryFile() as a,
            tempfile.TemporaryFile() as b,
            tempfile.TemporaryFile() as c,
        ):
            assert a.fileno() != b.fileno() != c.fileno()
            grew.append(scrape(metrics)[("process_open_fds", "controller")] - fds_before)
        if grew[-1] >= 3:
            break
    assert grew[-1] >= 3, f"open files grew by {grew} with three more open"


def test_a_watched_child_is_labelled_and_dropped_when_gone(
    child: subprocess.Popen[bytes],
) -> None:
    metrics = ServingMetrics()
    pid: list[int | None] = [child.pid]
    metrics.processes.watch("local_worker", lambda: pid[0])
    got = scrape(metrics)
    assert {proc for _, proc in got} == {"controller", "local_worker"}
    # the child started after this process, and has a memory of its own
    assert (
        got[("process_start_time_seconds", "local_worker")]
        >= got[("process_start_time_seconds", "controller")]
    )
    assert got[("process_resident_memory_bytes", "local_worker")] > 2**20

    pid[0] = None  # no worker running now: only the controller is reported
    assert {proc for _, proc in scrape(metrics)} == {"controller"}
    pid[0] = child.pid
    child.kill()
    child.wait()  # reaped: its /proc entry is gone
    assert {proc for _, proc in scrape(metrics)} == {"controller"}


def test_a_name_is_watched_once() -> None:
    metrics = ServingMetrics()
    with pytest.raises(ValueError, match="controller"):
        metrics.processes.watch("controller", lambda: 1)
