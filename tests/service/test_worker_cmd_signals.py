"""`clockwork worker` stops cleanly on SIGINT and SIGTERM, also when it was started with SIGINT
ignored (a background shell job, or a parent that ignores it: `clockwork serve` stops its local
worker with SIGINT)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clockwork.transport.cluster_secret import child_env, new_secret


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize(
    ("sig", "ignore_sigint"),
    [(signal.SIGINT, True), (signal.SIGINT, False), (signal.SIGTERM, False)],
)
def test_worker_stops_on_signal(sig: signal.Signals, ignore_sigint: bool, tmp_path: Path) -> None:
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "clockwork.cli.main",
        "worker",
        "--listen",
        f"127.0.0.1:{port}",
        "--backend",
        "emulated",
        "--devices",
        "1",
        "--models",
        "2",
    ]
    if ignore_sigint:  # as a shell starts a background job: SIGINT ignored, then exec
        cmd = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *cmd]
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=child_env(new_secret())
        )
    try:
        give_up = time.monotonic() + 30
        while not _listening(port):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < give_up, "worker did not start listening"
            time.sleep(0.05)
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0
        assert not _listening(port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
