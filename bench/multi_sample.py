"""Requests of several samples each, one at a time, against a running server: how many are served.

A request whose leading dimension is ``n`` becomes ``n`` scheduler requests; on an idle server
every one of them should be served well inside its deadline. This sends ``--count`` requests of
each ``--samples`` size in turn (JSON tensors of the model's input shape, filled with 0.1; the
models of ``--models`` in rotation; no timeout, so each model's default SLO) and prints, per size,
the statuses and the latency p50 and max (BENCHMARKS.md s.35).

usage: python bench/multi_sample.py --url http://127.0.0.1:8000 [--models a,b] [--samples 1,2,3]
       [--count 60]
"""

from __future__ import annotations

import argparse
import collections
import json
import time
import urllib.error
import urllib.request


def metadata(url: str, model: str) -> tuple[str, str, list[int]]:
    """The model's first input: name, datatype and shape without the batch dimension."""
    with urllib.request.urlopen(f"{url}/v2/models/{model}") as r:
        first = json.load(r)["inputs"][0]
    return first["name"], first["datatype"], [int(d) for d in first["shape"][1:]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--models", help="comma-separated (default: every READY model)")
    ap.add_argument("--samples", default="1,2,3,5,7")
    ap.add_argument("--count", type=int, default=60)
    args = ap.parse_args()
    url = args.url.rstrip("/")
    if args.models:
        models = args.models.split(",")
    else:
        req = urllib.request.Request(f"{url}/v2/repository/index", b"{}", method="POST")
        with urllib.request.urlopen(req) as r:
            models = [e["name"] for e in json.load(r) if e.get("state") == "READY"]
    if not models:
        raise SystemExit(f"no READY model at {url}")
    shapes = {m: metadata(url, m) for m in models}
    for n in (int(x) for x in args.samples.split(",")):
        statuses: collections.Counter[int] = collections.Counter()
        took: list[float] = []
        for i in range(args.count):
            model = models[i % len(models)]
            name, dtype, dims = shapes[model]
            size = n
            for d in dims:
                size *= d
            body = json.dumps(
                {"inputs": [{"name": name, "datatype": dtype, "shape": [n, *dims],
                             "data": [0.1] * size}]}
            ).encode()  # fmt: skip
            request = urllib.request.Request(
                f"{url}/v2/models/{model}/infer", body, {"Content-Type": "application/json"}
            )
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen(request) as r:
                    r.read()
                    statuses[r.status] += 1
            except urllib.error.HTTPError as e:
                statuses[e.code] += 1
            took.append(time.monotonic() - t0)
        took.sort()
        print(
            f"{n} samples x {args.count}: "
            + ", ".join(f"{code}: {c}" for code, c in sorted(statuses.items()))
            + f"; latency p50 {took[len(took) // 2] * 1e3:.1f} ms, max {took[-1] * 1e3:.1f} ms",
            flush=True,
        )


if __name__ == "__main__":
    main()
