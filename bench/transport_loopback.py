"""Round-trip latency and message rate of the TCP transport on loopback (127.0.0.1).

The client (this process) sends ``InferMsg``s over one ``StreamConnection`` to an echo-like server
in a child process, which answers each with a small ``ActionResultMsg``; a reader task matches
replies to requests by action id. Measured per event loop (asyncio's default, uvloop), payload (an
Infer with no inputs; an Infer with one ResNet50-sized input of 602,112 bytes) and concurrency
(1 and 32 requests in flight): round trip p50/p99 (send to reply, in ms) and round trips per
second. The first 10% of each run is warm-up and not counted.

    .venv/bin/python bench/transport_loopback.py --seconds 3

Prints a markdown table. Client and server are separate processes (one core each on a 2-core
machine); numbers on a shared machine are noisy, so compare rows of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

from clockwork.core.actions import ActionResult, ActionStatus, Infer
from clockwork.core.ids import DeviceId
from clockwork.transport import (
    ActionResultMsg,
    InferInputs,
    InferMsg,
    StreamConnection,
    connect,
    loop_factory,
    serve,
    uvloop_available,
)

HOST = "127.0.0.1"
DEV = DeviceId("w0", 0)
RESNET_INPUT = (1, 3, 224, 224)  # float32: 602,112 bytes


# ---- server (child process) --------------------------------------------------------------------


async def _answer(conn: StreamConnection) -> None:
    async for msg in conn:
        if isinstance(msg, InferMsg):
            a = msg.action
            await conn.send(
                ActionResultMsg(
                    0,
                    ActionResult(a.action_id, a.device, a.model, ActionStatus.SUCCESS, 1, 2, 3, 1),
                )
            )


async def _serve_forever() -> None:
    server = await serve(HOST, 0, _answer)
    print(server.port, flush=True)
    loop = asyncio.get_running_loop()
    # serve until our parent closes stdin
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()
    await server.wait_closed()


# ---- client ------------------------------------------------------------------------------------


@dataclass
class Result:
    loop: str
    payload: str
    in_flight: int
    latencies_ns: list[int]
    seconds: float

    @property
    def rate(self) -> float:
        return len(self.latencies_ns) / self.seconds

    def pct_ms(self, q: float) -> float:
        lat = sorted(self.latencies_ns)
        return lat[min(len(lat) - 1, int(q * len(lat)))] / 1e6


async def _measure(
    port: int, payload: str, in_flight: int, seconds: float, loop_name: str
) -> Result:
    conn = await connect(HOST, port)
    inputs: tuple[InferInputs, ...] = ()
    if payload != "small":
        x = np.random.default_rng(0).standard_normal(RESNET_INPUT).astype(np.float32)
        inputs = (InferInputs.from_arrays({"input": x}),)
    pending: dict[int, asyncio.Future[int]] = {}

    async def reader() -> None:
        async for msg in conn:
            if isinstance(msg, ActionResultMsg):
                fut = pending.pop(msg.result.action_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(time.perf_counter_ns())

    loop = asyncio.get_running_loop()
    next_id = 0
    start = time.perf_counter()
    warm_until = start + 0.1 * seconds
    stop_at = start + seconds
    latencies: list[int] = []

    async def client() -> None:
        nonlocal next_id
        while time.perf_counter() < stop_at:
            aid = next_id
            next_id += 1
            fut: asyncio.Future[int] = loop.create_future()
            pending[aid] = fut
            t0 = time.perf_counter_ns()
            await conn.send(InferMsg(0, Infer(aid, DEV, "resnet50_v2", 1, (aid,), 0, 1, 1), inputs))
            t1 = await fut
            if t0 / 1e9 >= warm_until:
                latencies.append(t1 - t0)

    read_task = asyncio.create_task(reader())
    await asyncio.gather(*(client() for _ in range(in_flight)))
    measured = time.perf_counter() - max(warm_until, start)
    conn.close("benchmark done")
    await conn.wait_closed()
    await read_task
    return Result(loop_name, payload, in_flight, latencies, measured)


def _run_client(port: int, loop_name: str, seconds: float) -> list[Result]:
    out = []
    with asyncio.Runner(loop_factory=loop_factory(loop_name == "uvloop")) as runner:
        for payload in ("small", "resnet"):
            for in_flight in (1, 32):
                res = runner.run(_measure(port, payload, in_flight, seconds, loop_name))
                out.append(res)
                print(
                    f"  {loop_name:7} {payload:6} {in_flight:2} in flight: "
                    f"{len(res.latencies_ns)} round trips",
                    file=sys.stderr,
                    flush=True,
                )
    return out


def _start_server(loop_name: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve", "--loop", loop_name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        proc.kill()
        raise RuntimeError(f"server did not start (said {line!r})")
    return proc, int(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each run (10)")
    ap.add_argument("--loop", choices=["asyncio", "uvloop", "both"], default="both")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.serve:
        with asyncio.Runner(loop_factory=loop_factory(args.loop == "uvloop")) as runner:
            runner.run(_serve_forever())
        return

    loops = ["asyncio", "uvloop"] if args.loop == "both" else [args.loop]
    if "uvloop" in loops and not uvloop_available():
        print("uvloop is not installed: measuring asyncio only", file=sys.stderr)
        loops.remove("uvloop")
    results: list[Result] = []
    for loop_name in loops:
        proc, port = _start_server(loop_name)
        try:
            results += _run_client(port, loop_name, args.seconds)
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    print(
        f"\nTCP transport on {HOST}, {args.seconds:g} s per row (first 10% warm-up), "
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores\n"
    )
    print(
        "| event loop | payload | in flight | round trip p50 / p99 (ms) | round trips/s | "
        "mean (ms) |"
    )
    print("|---|---|---|---|---|---|")
    names = {"small": "Infer, no inputs", "resnet": "Infer + 602,112 B input"}
    for r in results:
        if not r.latencies_ns:
            continue
        print(
            f"| {r.loop} | {names[r.payload]} | {r.in_flight} | "
            f"{r.pct_ms(0.50):.3f} / {r.pct_ms(0.99):.3f} | {r.rate:,.0f} | "
            f"{statistics.fmean(r.latencies_ns) / 1e6:.3f} |"
        )


if __name__ == "__main__":
    main()
