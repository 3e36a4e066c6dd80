"""The command line of a real ``clockwork serve`` for tests: CPU, loopback, no status lines."""

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
