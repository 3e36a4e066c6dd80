"""``clockwork serve`` recovers from the death of its local worker: ``kill -9`` it, and the
model is reported unavailable, the worker is started again on its port, re-joins, and the same
request is served again (a real server process, torch on the CPU)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.error import HTTPError, URLError

import pytest

from clockwork.models.create import create_repository
from clockwork.service.bench_cluster import free_ports

from support.serve_process import serve_argv

PARAMS = {"resolution": 32}
MODEL = "mobilenet_v2-0000"


def request(url: str, body: object | None = None) -> int:
    req = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
            status: int = r.status
            return status
    except HTTPError as e:
        e.read()
        return e.code


def infer_body() -> dict[str, object]:
    data = [0.5] * (3 * 32 * 32)
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, 3, 32, 32], "data": data}
    return {"inputs": [tensor], "parameters": {"timeout": 2_000_000}}


def wait_until(what: str, check: Callable[[], bool], timeout_s: float, log: Path) -> float:
    """Seconds until ``check()`` is true (fails the test after ``timeout_s``)."""
    t0 = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - t0
        except (URLError, ConnectionError):
            pass
        assert time.monotonic() - t0 < timeout_s, f"{what}: not within {timeout_s} s\n" + (
            log.read_text()
        )
        time.sleep(0.05)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    repo = tmp_path / "repo"
    create_repository(repo, "mobilenet_v2", 1, seed=1, params=PARAMS, batch_sizes=(1,))
    http_port, grpc_port = free_ports(2)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            serve_argv(repo, http_port, grpc_port),
            stdout=out,
            stderr=out,
            cwd=tmp_path,
        )
    url = f"http://127.0.0.1:{http_port}"
    try:
        wait_until("ready", lambda: request(f"{url}/v2/health/ready") == 200, 120, log)
        yield url, log, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def worker_pids(log: Path) -> list[int]:
    """The local worker's pids, in the order the server logged them."""
    text = log.read_text()
    first = re.findall(r"the local worker: pid (\d+)", text)
    again = re.findall(r"the local worker restarted \(pid (\d+)", text)
    return [int(p) for p in first + again]


def test_a_killed_local_worker_is_restarted_and_serves_again(
    served: tuple[str, Path, subprocess.Popen[bytes]],
) -> None:
    url, log, proc = served
    model = f"{url}/v2/models/{MODEL}"
    assert request(f"{model}/infer", infer_body()) == 200
    wait_until("supervision started", lambda: len(worker_pids(log)) == 1, 10, log)
    (pid,) = worker_pids(log)

    os.kill(pid, signal.SIGKILL)
    # the loss is seen at once (its socket closes): the model is not ready meanwhile
    wait_until("model not ready", lambda: request(f"{model}/ready") == 400, 5, log)
    assert request(f"{model}/infer", infer_body()) == 503
    back_s = wait_until(
        "served again", lambda: request(f"{model}/infer", infer_body()) == 200, 60, log
    )
    pids = worker_pids(log)
    assert len(pids) == 2 and pids[1] != pid, log.read_text()
    assert request(f"{model}/ready") == 200
    assert "exited with signal SIGKILL" in log.read_text()
    assert proc.poll() is None
    print(f"served again {back_s:.2f} s after the kill")

    proc.send_signal(signal.SIGINT)  # a clean stop: no restart of the worker it stops
    assert proc.wait(timeout=20) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pids[1], 0)
