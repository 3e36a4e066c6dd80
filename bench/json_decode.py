"""What decoding one JSON inference request costs the front door, on this CPU.

Times ``decode_http_infer`` (what the loop or a decode process runs for an HTTP body) on the
request ``clockwork bench --json`` sends for a 1x3x64x64 FP32 input (zeros, its default), and on
the same input filled with random numbers (longer text: every number's digits). The best of
``--repeats`` rounds of ``--number`` decodes each, in milliseconds per request. To compare two
builds, run it with ``PYTHONPATH=<other checkout>/src`` too.

    .venv/bin/python bench/json_decode.py [--elements 12288] [--repeats 9] [--number 100]
"""

from __future__ import annotations

import argparse
import json
import timeit

import numpy as np

import clockwork
from clockwork.frontend.http_server import decode_http_infer


def _body(data: list[float]) -> bytes:
    request = {
        "inputs": [{"name": "input", "shape": [1, len(data)], "datatype": "FP32", "data": data}],
        "parameters": {"timeout": 100_000},
    }
    return json.dumps(request, separators=(",", ":")).encode()


def main() -> None:
    p = argparse.ArgumentParser(description="what decoding a JSON inference request costs")
    p.add_argument("--elements", type=int, default=12_288)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--number", type=int, default=100)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    bodies = {
        "zeros": _body([0.0] * args.elements),
        "random": _body(rng.standard_normal(args.elements).astype(np.float32).tolist()),
    }
    print(f"build: {clockwork.__file__}")
    for name, body in bodies.items():

        def decode(body: bytes = body) -> object:
            return decode_http_infer(body, "identity", None, "m", "", 1 << 30)

        best_s = min(timeit.repeat(decode, number=args.number, repeat=args.repeats))
        ms = best_s / args.number * 1e3
        print(f"{name:>6}: {len(body):>7} bytes, {ms:.3f} ms per request")


if __name__ == "__main__":
    main()
