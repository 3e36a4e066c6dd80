"""How much device time the Azure replay needs, whatever the scheduler does (an estimate).

A batch can only hold requests that arrive while its oldest one can still wait, so a model with
rate r (requests/s) under an SLO of s seconds batches at most about b = min(max batch, r * (s -
exec(b))) requests: a long tail of rarely-used models runs at batch 1, at 2.5x the per-request cost
of batch 16. This script sums, minute by minute, the device-seconds per second each model needs at
its best achievable batch size, and compares that with the number of devices. It is a fluid
estimate (no cold starts, no queueing variance), not a bound that any schedule attains.

usage: python bench/azure_capacity.py [--trace PATH] [--models 4026] [--gpus 6] [--slo-ms 100]
       [--minutes 60] [--load-factors 0.25,0.5,0.8,1.0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from clockwork.core.profile import shipped_profile
from clockwork.core.units import NS_PER_S
from clockwork.workload import DEFAULT_AZURE_TRACE, AzureReplay, AzureTrace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", type=Path, default=DEFAULT_AZURE_TRACE)
    ap.add_argument("--models", type=int, default=4026)
    ap.add_argument("--gpus", type=int, default=6)
    ap.add_argument("--slo-ms", type=float, default=100.0)
    ap.add_argument("--minutes", type=int, default=60)
    ap.add_argument("--load-factors", default="0.25,0.5,0.8,1.0")
    args = ap.parse_args()
    profile = shipped_profile("resnet50_v2-V100-32GB")
    sizes = np.array(sorted(profile.exec_ns), dtype=float)
    exec_s = np.array([profile.exec_ns[int(b)] for b in sizes]) / NS_PER_S
    capacity = args.gpus * profile.ideal_throughput_rps()
    trace = AzureTrace.load(args.trace)
    names = [f"m{i:04d}" for i in range(args.models)]
    slo_s = args.slo_ms / 1000
    print(
        f"trace {args.trace}, {args.models} models, {args.gpus} GPUs, SLO {args.slo_ms} ms, "
        f"{args.minutes} trace minutes; ideal capacity {capacity:,.0f} rps"
    )
    print(
        f"{'load factor':>11} {'offered rps':>12} {'device-s/s mean':>16} {'peak minute':>12} "
        f"{'mean / GPUs':>12}"
    )
    for lf in (float(x) for x in args.load_factors.split(",")):
        replay = AzureReplay(
            trace, names, capacity, lf, args.minutes * 60 * NS_PER_S, round(args.slo_ms * 1e6), 1
        )
        need = []
        for minute in range(args.minutes):
            rate = np.asarray(replay.expected_counts(minute), dtype=float) / 60.0
            rate = rate[rate > 0]
            # largest batch whose requests all fit in the SLO window (fixed point, 3 rounds)
            b = np.ones_like(rate)
            for _ in range(3):
                window = np.maximum(slo_s - np.interp(b, sizes, exec_s), 0.0)
                b = np.clip(rate * window, 1.0, sizes[-1])
            need.append(float((rate * np.interp(b, sizes, exec_s) / b).sum()))
        arr = np.array(need)
        print(
            f"{lf:>11.2f} {lf * capacity:>12,.0f} {arr.mean():>16.2f} {arr.max():>12.2f} "
            f"{arr.mean() / args.gpus:>12.2f}"
        )


if __name__ == "__main__":
    main()
