"""A digest of every decision of one simulated run: the SHA-256 of its request and action logs.

A change meant to keep the schedule (a speed-up, a refactor) must print the same digest before
and after; run it with both versions (or both builds) on the same arguments. Azure replay as in
BENCHMARKS.md section 1 (4,026 models, 6 GPUs, 100 ms SLO, noise on, minutes of 6 s).

usage: python bench/schedule_digest.py [--policy clockwork] [--load-factor 0.5] [--duration 30]
       [--per-device-estimates]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib

import numpy as np

from clockwork.build import build_kind
from clockwork.core.events import ModelInfo
from clockwork.core.policies import SIMULATED_SCHEDULE_AHEAD_NS, make_policy
from clockwork.core.profile import V100_32GB, shipped_profile
from clockwork.core.units import NS_PER_MS, NS_PER_S
from clockwork.sim.runner import SimConfig, Simulation
from clockwork.workload import DEFAULT_AZURE_TRACE, AzureReplay, AzureTrace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="clockwork")
    ap.add_argument("--load-factor", type=float, default=0.5)
    ap.add_argument("--duration", type=float, default=30.0, help="virtual seconds")
    ap.add_argument("--trace", default=str(DEFAULT_AZURE_TRACE))
    ap.add_argument(
        "--admission-level",
        type=float,
        default=0.0,
        help="the Clockwork policy's EstimatorConfig.level (0: the paper's p99 of 10)",
    )
    ap.add_argument(
        "--schedule-ahead-ms",
        type=float,
        default=SIMULATED_SCHEDULE_AHEAD_NS / NS_PER_MS,
        help="the Clockwork horizon (default: `clockwork sim`'s)",
    )
    ap.add_argument(
        "--per-device-estimates",
        action="store_true",
        help="estimates per device, as a serving process keeps them (default: per device "
        "kind, the paper's; the digests recorded in BENCHMARKS.md are of the default)",
    )
    args = ap.parse_args()
    profile = shipped_profile("resnet50_v2-V100-32GB")
    names = [f"m{i:04d}" for i in range(4026)]
    models = [ModelInfo(n, (profile,)) for n in names]
    duration_ns = round(args.duration * NS_PER_S)
    workload = AzureReplay(
        AzureTrace.load(args.trace),
        names,
        6 * profile.ideal_throughput_rps(),
        args.load_factor,
        duration_ns,
        100 * NS_PER_MS,
        1,
        minute_ns=6 * NS_PER_S,
    )
    config = SimConfig(duration_ns=duration_ns, gpus=6, device_kind=V100_32GB)
    policy = make_policy(
        args.policy,
        admission_level=args.admission_level,
        schedule_ahead_ns=round(args.schedule_ahead_ms * NS_PER_MS),
        per_device_estimates=args.per_device_estimates,
    )
    result = Simulation(config, models, workload, policy).run()
    status = result.requests.table().status
    ok = int(np.sum(status == result.requests.table().status_names.index("SUCCESS")))
    digest = hashlib.sha256()
    for table in (result.requests.table(), result.actions.table()):
        for f in dataclasses.fields(table):
            value = getattr(table, f.name)
            digest.update(
                value.tobytes() if isinstance(value, np.ndarray) else repr(value).encode()
            )
    estimates = ", per-device estimates" if args.per_device_estimates else ""
    print(
        f"{args.policy} load {args.load_factor} ({build_kind()} build{estimates}, "
        f"trace {args.trace}): "
        f"{result.responses:,} requests, {result.events:,} events, "
        f"digest {digest.hexdigest()[:16]}, SLO attainment {100 * ok / len(status):.4f}%"
    )


if __name__ == "__main__":
    main()
