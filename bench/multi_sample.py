"""Requests of several samples each, one at a time, against a running server: how many are served.

A request whose leading dimension is ``n`` becomes ``n`` scheduler requests; on an idle server
every one of them should be served well inside its deadline. This sends ``--count`` requests of
each ``--samples`` size in turn (JSON tensors of the model's input shapes, floats filled with
0.1; the models of ``--models`` in rotation; no timeout, so each model's default SLO) through
``clockwork.client.oip_client`` and prints, per size, the statuses and the latency p50 and max
(BENCHMARKS.md s.35).

usage: python bench/multi_sample.py --url http://127.0.0.1:8000 [--models a,b] [--samples 1,2,3]
       [--count 60]
"""

from __future__ import annotations

import argparse
import asyncio
import collections

import numpy as np

from clockwork.client.oip_client import (
    InferInputs,
    InputTensor,
    OIPClient,
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--models", default="", help="comma-separated (default: every READY model)")
    ap.add_argument("--samples", default="1,2,3,5,7")
    ap.add_argument("--count", type=int, default=60)
    args = ap.parse_args()
    models = [m for m in args.models.split(",") if m]
    sizes = [int(x) for x in args.samples.split(",")]
    asyncio.run(run(args.url, models, sizes, args.count))


if __name__ == "__main__":
    main()
