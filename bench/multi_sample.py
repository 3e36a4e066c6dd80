"""Requests of several samples each, one at a time, against a running server: how many are served.

A request whose leading dimension is ``n`` becomes ``n`` scheduler requests; on an idle server
every one of them should be served well inside its deadline. This sends ``--count`` requests of
each ``--samples`` size in turn (JSON tensors of the model's input shapes, floats filled with
0.1; the models of ``--models`` in rotation; no timeout, so each model's default SLO) through
``clockwork.client.oip_client`` and prints, per size, the statuses and the latency p50 and max
(BENCHMARKS.md s.35).

With ``--rate R``, the calls of each size are sent open-loop instead, Poisson at ``R`` calls a
second for ``--duration`` seconds (binary tensors, ``--timeout-ms`` each, seed ``--seed``), and
it prints the calls answered within their timeout, the refusals and how soon they came, and the
goodput in samples a second (calls within their timeout times their samples).

usage: python bench/multi_sample.py --url http://127.0.0.1:8000 [--models a,b] [--samples 1,2,3]
       [--count 60] [--rate R --duration 20 --timeout-ms 100 --seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import time

import numpy as np

from clockwork.client.oip_client import (
    InferInputs,
    InputTensor,
    OIPClient,
    Outcome,
    OutcomeKind,
    connect,
    make_inputs,
    parse_endpoint,
)


async def samples_of(client: OIPClient, model: str, n: int) -> InferInputs:
    """One request of ``n`` samples of ``model``: its batch-1 inputs repeated ``n`` times."""
    tensors = []
    for t in make_inputs(await client.model_metadata(model)).tensors:
        data = np.repeat(t.data, n, axis=0)
        if data.dtype.kind == "f":
            data.fill(0.1)
        tensors.append(InputTensor(t.name, t.datatype, data))
    return InferInputs(tensors)


async def run(url: str, models: list[str], sizes: list[int], count: int) -> None:
    async with connect(parse_endpoint(url), binary=False) as client:
        if not models:
            models = [m.name for m in await client.repository_index() if m.ready]
        if not models:
            raise SystemExit(f"no READY model at {url}")
        for n in sizes:
            inputs = {m: await samples_of(client, m, n) for m in models}
            statuses: collections.Counter[str] = collections.Counter()
            took_ms: list[float] = []
            for i in range(count):
                model = models[i % len(models)]
                outcome = await client.infer(model, inputs[model], None)
                statuses[str(outcome.code)] += 1
                took_ms.append(outcome.latency_ns / 1e6)
            took_ms.sort()
            print(
                f"{n} samples x {count}: "
                + ", ".join(f"{code}: {c}" for code, c in sorted(statuses.items()))
                + f"; latency p50 {took_ms[len(took_ms) // 2]:.1f} ms, max {took_ms[-1]:.1f} ms",
                flush=True,
            )


async def open_loop(
    url: str, models: list[str], n: int, rate: float, duration_s: float, timeout_ms: int, seed: int
) -> None:
    """Calls of ``n`` samples, Poisson at ``rate`` a second for ``duration_s``; one line of
    figures."""
    async with connect(parse_endpoint(url), binary=True, pool_size=1024) as client:
        if not models:
            models = [m.name for m in await client.repository_index() if m.ready]
        inputs = {m: await samples_of(client, m, n) for m in models}
        for x in inputs.values():
            client.prepare(x)
        rng = np.random.default_rng(seed)
        calls: list[asyncio.Task[Outcome]] = []
        t0 = time.monotonic()
        due = 0.0
        i = 0
        while due < duration_s:
            wait = t0 + due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            model = models[i % len(models)]
            calls.append(
                asyncio.create_task(
                    client.infer(model, inputs[model], timeout_ms * 1000, client_timeout_s=30)
                )
            )
            i += 1
            due += rng.exponential(1 / rate)
        outcomes = await asyncio.gather(*calls)
    limit_ns = timeout_ms * 1_000_000
    met = sum(1 for o in outcomes if o.ok and o.latency_ns <= limit_ns)
    refused = sorted(o.latency_ns / 1e6 for o in outcomes if o.kind is OutcomeKind.REFUSED)
    other = len(outcomes) - met - len(refused)

    def q(p: float) -> str:
        return f"{refused[min(len(refused) - 1, int(p * len(refused)))]:.1f}" if refused else "-"

    print(
        f"{n} samples at {rate:g} calls/s for {duration_s:g} s ({timeout_ms} ms): "
        f"{len(outcomes)} calls, {met} within their timeout ({100 * met / len(outcomes):.2f}%), "
        f"{len(refused)} refused (p50 {q(0.5)} ms, p99 {q(0.99)} ms), {other} late or failed; "
        f"goodput {met * n / duration_s:.1f} samples/s",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--models", default="", help="comma-separated (default: every READY model)")
    ap.add_argument("--samples", default="1,2,3,5,7")
    ap.add_argument("--count", type=int, default=60)
    ap.add_argument("--rate", type=float, default=0.0, help="calls a second, open-loop")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--timeout-ms", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    models = [m for m in args.models.split(",") if m]
    sizes = [int(x) for x in args.samples.split(",")]
    if args.rate <= 0:
        asyncio.run(run(args.url, models, sizes, args.count))
        return
    for n in sizes:
        asyncio.run(
            open_loop(args.url, models, n, args.rate, args.duration, args.timeout_ms, args.seed)
        )


if __name__ == "__main__":
    main()
