"""The command lines of a real ``clockwork serve`` for tests: CPU, loopback, no status lines
unless asked."""

from __future__ import annotations

import sys
from pathlib import Path


def serve_argv(repo: Path, http_port: int, grpc_port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "clockwork.cli.main",
        "serve",
        "--repository",
        str(repo),
        "--host",
        "127.0.0.1",
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        "--device",
        "cpu",
        "--status-interval",
        "0",
        *extra,
    ]


#: the ``clockwork`` command, as a test runs it
CLI = [sys.executable, "-m", "clockwork.cli.main"]


def remote_serve_argv(
    worker_port: int, http_port: int, grpc_port: int, status_interval_s: float = 0, *extra: str
) -> list[str]:
    """``serve`` in front of one worker on this machine, with no local worker of its own."""
    return [
        *CLI,
        "serve",
        "--no-local-worker",
        "--workers",
        f"127.0.0.1:{worker_port}",
        "--host",
        "127.0.0.1",
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        "--status-interval",
        f"{status_interval_s:g}",
        *extra,
    ]
