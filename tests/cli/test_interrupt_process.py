"""Ctrl-C on real ``clockwork`` processes: ``sim`` stops cleanly and writes the report of what ran,
marked partial; ``serve --no-local-worker`` waiting for its workers stops at once."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import time
from pathlib import Path

from support.serve_process import CLI, remote_serve_argv


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout_s: float) -> list[str]:
    """stderr lines up to the first holding ``needle`` (fails after ``timeout_s``)."""
    assert proc.stderr is not None
    seen: list[str] = []
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not sel.select(timeout=deadline - time.monotonic()):
            continue
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return seen
    proc.kill()
    raise AssertionError(f"no line with {needle!r} in time; stderr so far: {seen}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ctrl_c_during_sim_writes_a_partial_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [*CLI, "sim", "--models", "20", "--duration", "3600", "--no-plots", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # the first progress line: the simulation loop runs (an hour of arrivals: far from done)
    before = _wait_for_line(proc, "req/wall-s", timeout_s=60)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    stderr = "".join(before) + stderr
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert "stopped: sim" in stderr and "(partial: interrupted)" in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["partial"] is True
    assert summary["requests"] > 0
    # the rates are over the arrivals that ran, not the hour asked for
    assert 0 < summary["duration_s"] < 3600
    assert (out / "requests.parquet").stat().st_size > 0
    table = {line.split()[0]: line for line in stdout.splitlines() if line.strip()}
    assert "interrupted" in table["partial"]


def test_ctrl_c_while_serve_waits_for_workers_stops_at_once() -> None:
    # a worker address nobody listens on: serve waits (up to 10 s) for it to join
    http_port, grpc_port, worker_port = _free_port(), _free_port(), _free_port()
    env = dict(os.environ, CLOCKWORK_CLUSTER_SECRET="00" * 32)
    proc = subprocess.Popen(
        remote_serve_argv(worker_port, http_port, grpc_port),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    # the front door is up once its port answers; then it waits for the worker
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", http_port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "serve never listened"
            time.sleep(0.05)
    sent = time.monotonic()
    # as a terminal's Ctrl-C: to the whole process group (the decode pool's process too)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    took_s = time.monotonic() - sent
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    # not after the 10 s join wait: a few seconds at most, even on a loaded machine
    assert took_s < 5, (took_s, stderr)
