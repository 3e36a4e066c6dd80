"""What the front door itself costs: Triton's perf_analyzer against the HTTP and gRPC servers over
a model server that answers at once (an echo model), the server pinned to one core.

    python bench/frontend_overhead.py --perf-analyzer /tmp/pa/bin/perf_analyzer --out DIR

At concurrency 1 the p50 latency is what one request spends in the client, the loopback and our
front door (the model takes no time); at higher concurrency the throughput is what one core of
front door sustains. The server runs in a child process pinned to CPU 0 (``taskset``), the
client on CPU 1. Writes ``frontend_overhead.json`` and a Markdown table into ``--out``.

``python bench/frontend_overhead.py serve --http-port P --grpc-port Q`` runs the echo server
alone. perf_analyzer needs the setup of ``bench/perf_analyzer_setup.sh``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from clockwork.core.signature import ModelSignature, TensorSignature
from clockwork.frontend.api import (
    DurationStat,
    ErrorKind,
    FrontendError,
    InferenceCall,
    InferenceResult,
    ModelMetadata,
    ModelState,
    ModelStatistics,
    RepositoryEntry,
    Tensor,
)

MODEL = "echo"
WIDTH = 16
SIGNATURE = ModelSignature(
    (TensorSignature("INPUT0", "FP32", (WIDTH,)),),
    (TensorSignature("OUTPUT0", "FP32", (WIDTH,)),),
    max_batch_size=8,
    platform="echo",
)


class EchoServer:
    """One model, ``echo``, whose output is its input: all the time is the front door's."""

    name = "clockwork"
    version = "bench"

    def __init__(self) -> None:
        self.count = 0

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return True

    def _check(self, model: str) -> None:
        if model != MODEL:
            raise FrontendError(ErrorKind.NOT_FOUND, f"unknown model {model!r}")

    def model_metadata(self, model: str, version: str = "") -> ModelMetadata:
        self._check(model)
        return ModelMetadata(MODEL, ("1",), "echo", SIGNATURE.inputs, SIGNATURE.outputs, 8)

    def model_ready(self, model: str, version: str = "") -> bool:
        self._check(model)
        return True

    def model_config(self, model: str, version: str = "") -> Mapping[str, object]:
        self._check(model)
        return {
            "name": MODEL,
            "platform": "echo",
            "backend": "echo",
            "max_batch_size": 8,
            "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [WIDTH]}],
            "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [WIDTH]}],
            "version_policy": {"specific": {"versions": [1]}},
        }

    def refuse_early(self, model: str, version: str, timeout_us: int, spent_ns: int) -> None:
        return None  # nothing to refuse: the echo answers everything

    async def infer(self, call: InferenceCall) -> InferenceResult:
        self._check(call.model)
        (tensor,) = call.inputs
        self.count += 1
        return InferenceResult(
            MODEL, "1", call.id, (Tensor("OUTPUT0", "FP32", np.asarray(tensor.data)),)
        )

    def repository_index(self, ready_only: bool = False) -> Sequence[RepositoryEntry]:
        return [RepositoryEntry(MODEL, "1", ModelState.READY)]

    async def load_model(self, model: str) -> None:
        self._check(model)

    async def unload_model(self, model: str) -> None:
        self._check(model)

    def statistics(self, model: str = "", version: str = "") -> Sequence[ModelStatistics]:
        # perf_analyzer reads the statistics around each window and picks the version whose
        # inference count moved
        zero = DurationStat()
        n = DurationStat(self.count, 0)
        return [ModelStatistics(MODEL, "1", 0, self.count, self.count, n, zero, n, n, n, n)]

    def metrics_text(self) -> bytes:
        return b""


def serve(http_port: int, grpc_port: int) -> None:
    from clockwork.frontend.grpc_server import start_grpc
    from clockwork.frontend.http_server import start_http
    from clockwork.transport import loop_factory

    async def main() -> None:
        server = EchoServer()
        http = await start_http(server, "127.0.0.1", http_port)
        grpc = await start_grpc(server, "127.0.0.1", grpc_port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
        await grpc.stop(0.5)
        await http.cleanup()

    with asyncio.Runner(loop_factory=loop_factory(True)) as runner:
        runner.run(main())


def perf(
    pa: str, protocol: str, port: int, concurrency: int, out_csv: Path, requests: int
) -> dict[str, float]:
    env = dict(os.environ)
    lib = Path(pa).parent.parent / "lib"
    cuda = next(lib.glob("python3*/site-packages/nvidia/cuda_runtime/lib"), None)
    if cuda is not None:
        env["LD_LIBRARY_PATH"] = f"{cuda}:{env.get('LD_LIBRARY_PATH', '')}"
    cmd = [
        "taskset",
        "-c",
        "1",
        pa,
        "-m",
        MODEL,
        "-u",
        f"127.0.0.1:{port}",
        "-i",
        protocol,
        "--concurrency-range",
        str(concurrency),
        "--measurement-mode",
        "count_windows",
        "--measurement-request-count",
        str(requests),
        "-s",
        "30",
        "--max-trials",
        "6",
        "-f",
        str(out_csv),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"perf_analyzer failed ({proc.returncode}):\n{proc.stdout[-2000:]}"
            f"\n{proc.stderr[-2000:]}"
        )
    with out_csv.open() as f:
        row = next(csv.DictReader(f))
    return {
        "concurrency": concurrency,
        "infer_per_s": float(row["Inferences/Second"]),
        "p50_us": float(row["p50 latency"]),
        "p99_us": float(row["p99 latency"]),
        "client_send_us": float(row["Client Send"]),
        "client_recv_us": float(row["Client Recv"]),
    }


def wait_ready(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd")
    s = sub.add_parser("serve")
    s.add_argument("--http-port", type=int, default=18100)
    s.add_argument("--grpc-port", type=int, default=18101)
    p.add_argument("--perf-analyzer", default="/tmp/pa/bin/perf_analyzer")
    p.add_argument("--out", type=Path, default=Path("bench/results/frontend_overhead"))
    p.add_argument("--concurrency", default="1,8", help="comma-separated levels")
    p.add_argument("--requests", type=int, default=2000, help="requests per measurement")
    args = p.parse_args(argv)
    if args.cmd == "serve":
        serve(args.http_port, args.grpc_port)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    http_port, grpc_port = 18100, 18101
    server = subprocess.Popen(
        [
            "taskset",
            "-c",
            "0",
            sys.executable,
            __file__,
            "serve",
            "--http-port",
            str(http_port),
            "--grpc-port",
            str(grpc_port),
        ]
    )
    rows = []
    try:
        wait_ready(http_port)
        for protocol, port in (("http", http_port), ("grpc", grpc_port)):
            for c in (int(x) for x in args.concurrency.split(",")):
                r = perf(
                    args.perf_analyzer,
                    protocol,
                    port,
                    c,
                    args.out / f"{protocol}-c{c}.csv",
                    args.requests,
                )
                r["protocol"] = protocol  # type: ignore[assignment]
                rows.append(r)
                print(
                    f"{protocol} concurrency {c}: {r['infer_per_s']:.0f} infer/s, p50 "
                    f"{r['p50_us']:.0f} us, p99 {r['p99_us']:.0f} us",
                    flush=True,
                )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
    (args.out / "frontend_overhead.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        "| protocol | concurrency | infer/s (one server core) | p50 us | p99 us |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['protocol']} | {r['concurrency']:.0f} | {r['infer_per_s']:,.0f} | "
        f"{r['p50_us']:,.0f} | {r['p99_us']:,.0f} |"
        for r in rows
    ]
    (args.out / "frontend_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
