"""Simulator and scheduler speed: simulated requests per second of wall time, and the
scheduler's CPU time per request, on the Azure replay (4,026 models, 6 GPUs, 100 ms SLO).

Each configuration runs REPEATS times; the median and the best run are reported (this machine's
speed flips between levels in phases of seconds to minutes, see shared/MEASURED.md: the median
says what a run will likely see, the best what the code does when the machine is not slowed).

usage: python bench/sim_speed.py [--repeats 3] [--duration 60] [--load-factors 0.25,0.5,1.0]
"""

from __future__ import annotations

import argparse
import statistics

from clockwork.build import build_kind
from clockwork.core.events import ModelInfo
from clockwork.core.policies import make_policy
from clockwork.core.profile import V100_32GB, shipped_profile
from clockwork.core.units import NS_PER_MS, NS_PER_S
from clockwork.sim.runner import SimConfig, Simulation
from clockwork.workload import DEFAULT_AZURE_TRACE, AzureReplay, AzureTrace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=60.0, help="virtual seconds")
    ap.add_argument("--minute-s", type=float, default=6.0)
    ap.add_argument("--load-factors", default="0.25,0.5,1.0")
    ap.add_argument("--policies", default="clockwork,reactive")
    args = ap.parse_args()
    profile = shipped_profile("resnet50_v2-V100-32GB")
    names = [f"m{i:04d}" for i in range(4026)]
    models = [ModelInfo(n, (profile,)) for n in names]
    capacity = 6 * profile.ideal_throughput_rps()
    trace = AzureTrace.load(DEFAULT_AZURE_TRACE)
    duration_ns = round(args.duration * NS_PER_S)
    print(f"build: {build_kind()} (make install-compiled builds the mypyc one)")
    print(
        f"{'policy':>10} {'load':>5} {'requests':>9} {'req/wall-s':>11} {'best':>9} "
        f"{'sched us/req':>13} {'sched req/cpu-s':>16}"
    )
    for policy in args.policies.split(","):
        for lf in (float(x) for x in args.load_factors.split(",")):
            rates, costs, n = [], [], 0
            for _ in range(args.repeats):
                wl = AzureReplay(
                    trace,
                    names,
                    capacity,
                    lf,
                    duration_ns,
                    100 * NS_PER_MS,
                    1,
                    minute_ns=round(args.minute_s * NS_PER_S),
                )
                cfg = SimConfig(duration_ns=duration_ns, gpus=6, device_kind=V100_32GB)
                r = Simulation(cfg, models, wl, make_policy(policy)).run()
                n = r.responses
                rates.append(n / r.wall_s)
                costs.append(r.scheduler_cpu_s / n * 1e6)
            us = statistics.median(costs)
            print(
                f"{policy:>10} {lf:>5.2f} {n:>9,} {statistics.median(rates):>11,.0f} "
                f"{max(rates):>9,.0f} {us:>13.1f} {1e6 / us:>16,.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
