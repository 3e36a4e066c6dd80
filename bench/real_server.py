"""A ``clockwork serve`` process for the benchmarks that drive the real server: started on a free
port, waited for until it is ready, stopped with Ctrl-C (SIGINT) as a person would."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOCKWORK = [sys.executable, "-m", "clockwork.cli.main"]
READY_LINE = "Ctrl-C stops the server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(
    repository: Path, log: Path, extra: Sequence[str] = (), timeout_s: float = 600.0
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``clockwork serve --repository`` on 127.0.0.1 (HTTP only), its output in ``log``; yields
    the process and its URL once it printed its banner, and stops it on leaving."""
    port = free_port()
    with log.open("wb") as f:
        server = subprocess.Popen(
            [
                *CLOCKWORK,
                "serve",
                "--repository",
                str(repository),
                "--http-port",
                str(port),
                "--grpc-port",
                "0",
                "--host",
                "127.0.0.1",
                *extra,
            ],
            stdout=f,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        deadline = time.monotonic() + timeout_s
        while READY_LINE not in log.read_text(errors="replace"):
            if server.poll() is not None:
                raise SystemExit(f"the server exited ({server.returncode}); see {log}")
            if time.monotonic() > deadline:
                raise SystemExit(f"the server was not ready within {timeout_s:.0f} s; see {log}")
            time.sleep(0.2)
        yield server, f"http://127.0.0.1:{port}"
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()


def bench_command(
    url: str,
    models: Sequence[str],
    *,
    rate_rps: float,
    duration_s: float,
    slo_ms: float,
    seed: int,
    encoding: str = "json",
    out: Path | None = None,
) -> list[str]:
    """``clockwork bench --url``: Poisson arrivals over ``models`` with ``encoding``'s tensors
    (``json`` or ``binary``), quiet, no plots; a report into ``out`` if given."""
    command = [
        *CLOCKWORK, "bench", "--url", url, "--models", ",".join(models), f"--{encoding}",
        "--workload", "poisson", "--rate", f"{rate_rps:g}", "--duration", f"{duration_s:g}",
        "--slo-ms", f"{slo_ms:g}", "--seed", str(seed), "--no-plots", "--quiet",
    ]  # fmt: skip
    if out is not None:
        command += ["--out", str(out)]
    return command


def run_bench(command: list[str]) -> None:
    """Run a ``bench_command`` to its end (its output dropped; a failure raises)."""
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
