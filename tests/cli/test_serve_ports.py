"""``clockwork serve`` with a port another process listens on: one clean error line, before any
worker child starts (no child traceback, no gRPC C-core log line)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clockwork.cli.serve_startup import port_in_use


@pytest.fixture
def taken() -> Iterator[int]:
    """A port this test listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("option", ["--http-port", "--grpc-port"])
def test_taken_port_is_one_clean_line(tmp_path: Path, taken: int, option: str) -> None:
    ports = {"--http-port": _free_port(), "--grpc-port": _free_port(), option: taken}
    argv = [sys.executable, "-m", "clockwork.cli.main", "serve", "--host", "127.0.0.1"]
    for name, port in ports.items():
        argv += [name, str(port)]
    # a repository: the local worker would be started for it, were the ports free
    r = subprocess.run(
        [*argv, "--repository", str(tmp_path), "--device", "cpu"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"clockwork serve: error: {option} {taken}: ")
    assert "already in use" in lines[0] and f"127.0.0.1:{taken}" in lines[0]
    assert r.stdout == ""


def test_port_in_use_sees_a_listener_only(taken: int) -> None:
    assert port_in_use("127.0.0.1", taken) is not None
    assert port_in_use("127.0.0.1", _free_port()) is None
