"""The best SLO attainment any scheduler could reach on the Azure replay's own arrivals (a bound).

For each load factor this draws exactly the arrivals `clockwork sim --workload azure` draws with
the same arguments (same trace, models, seed, minute length, start minute), and computes, with
`clockwork.sim.attainment_bound`, how many requests every schedule on `--gpus` devices must miss:
windows of several lengths and offsets, in each the device time its requests need at the best
batching the SLO allows, against the device time there is. The bound assumes the profile's
durations exactly (no noise), every model resident (no loads), and the simulator's one-way
network delay before and after each batch; it holds for any policy, not only Clockwork's.
With `--achieved PATTERN` (a `summary.json` path with `{lf}` for the load factor as written in
`--load-factors`) the attainment a run achieved is printed beside the bound.

usage: python bench/azure_bound.py [--trace PATH] [--models 4026] [--gpus 6] [--slo-ms 100]
       [--duration 360] [--minute-s 6] [--start-minute 0] [--seed 1]
       [--load-factors 0.25,0.5,0.6,0.8,1.0] [--network-delay-us 100] [--achieved PATTERN]
       [--windows 0.1,0.2,0.5,1,2,6] [--exact-drops] [--out F.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from clockwork.core.profile import shipped_profile
from clockwork.core.units import NS_PER_MS, NS_PER_S, NS_PER_US
from clockwork.sim.attainment_bound import attainment_bound, batch_costs
from clockwork.workload import DEFAULT_AZURE_TRACE, AzureReplay, AzureTrace

WINDOWS_S = (0.1, 0.2, 0.5, 1.0, 2.0, 6.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", type=Path, default=DEFAULT_AZURE_TRACE)
    ap.add_argument("--models", type=int, default=4026)
    ap.add_argument("--gpus", type=int, default=6)
    ap.add_argument("--slo-ms", type=float, default=100.0)
    ap.add_argument("--duration", type=float, default=360.0, help="virtual seconds")
    ap.add_argument("--minute-s", type=float, default=6.0)
    ap.add_argument("--start-minute", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--load-factors", default="0.25,0.5,0.6,0.8,1.0")
    ap.add_argument("--network-delay-us", type=float, default=100.0, help="one-way")
    ap.add_argument(
        "--achieved",
        help="summary.json path pattern with {lf}, e.g. "
        "bench/results/sweep-lf{lf}-clockwork/summary.json",
    )
    ap.add_argument(
        "--windows",
        default=",".join(f"{w:g}" for w in WINDOWS_S),
        help="window lengths in seconds (each gives a valid bound; the tightest is kept)",
    )
    ap.add_argument(
        "--exact-drops",
        action="store_true",
        help="count an overloaded window's misses by what each drop saves (tighter, slower: "
        "use with few --windows)",
    )
    ap.add_argument("--out", type=Path, help="write the table as JSON here")
    args = ap.parse_args()

    profile = shipped_profile("resnet50_v2-V100-32GB")
    costs = batch_costs(profile.exec_ns)
    capacity = args.gpus * profile.ideal_throughput_rps()
    trace = AzureTrace.load(args.trace)
    names = [f"m{i:04d}" for i in range(args.models)]
    index = {n: i for i, n in enumerate(names)}
    slo_ns = round(args.slo_ms * NS_PER_MS)
    delay_ns = round(args.network_delay_us * NS_PER_US)
    windows_s = [float(w) for w in args.windows.split(",")]
    windows_ns = [round(w * NS_PER_S) for w in windows_s]
    print(
        f"trace {args.trace}, {args.models} models, {args.gpus} GPUs, SLO {args.slo_ms} ms, "
        f"{args.duration:g} s at {args.minute_s:g} s per trace minute from minute "
        f"{args.start_minute}, seed {args.seed}, network delay {args.network_delay_us:g} us "
        f"each way; windows {', '.join(f'{w:g}' for w in windows_s)} s x 4 offsets"
        f"{'; drops counted by what they save' if args.exact_drops else ''}",
        flush=True,
    )
    header = (
        f"{'load factor':>11} {'requests':>10} {'must miss':>10} {'bound':>10} "
        f"{'window s':>9} {'busiest window, device-s/s':>27} {'achieved':>10}"
    )
    print(header, flush=True)
    rows = []
    for lf_text in args.load_factors.split(","):
        lf = float(lf_text)
        t0 = time.perf_counter()
        replay = AzureReplay(
            trace,
            names,
            capacity,
            lf,
            round(args.duration * NS_PER_S),
            slo_ns,
            args.seed,
            minute_ns=round(args.minute_s * NS_PER_S),
            start_minute=args.start_minute,
        )
        arrivals = list(replay.arrivals())
        times = np.fromiter((a.time_ns for a in arrivals), dtype=np.int64, count=len(arrivals))
        models = np.fromiter(
            (index[a.model] for a in arrivals), dtype=np.int64, count=len(arrivals)
        )
        del arrivals
        best = attainment_bound(
            times,
            models,
            slo_ns=slo_ns,
            costs=costs,
            devices=args.gpus,
            windows_ns=windows_ns,
            lead_ns=delay_ns,
            tail_ns=delay_ns,
            exact_drops=args.exact_drops,
        )
        achieved = None
        if args.achieved is not None:
            summary = Path(args.achieved.format(lf=lf_text))
            if summary.exists():
                achieved = float(json.loads(summary.read_text())["slo_attainment"])
        busiest = best.busiest_window_work_ns / best.window_ns
        rows.append(
            {
                "load_factor": lf,
                "requests": best.requests,
                "min_missed": best.min_missed,
                "attainment_bound": best.attainment_bound,
                "window_s": best.window_ns / NS_PER_S,
                "offset_s": best.offset_ns / NS_PER_S,
                "busiest_window_device_s_per_s": busiest,
                "achieved_clockwork": achieved,
                "wall_s": time.perf_counter() - t0,
            }
        )
        print(
            f"{lf:>11.2f} {best.requests:>10,} {best.min_missed:>10,} "
            f"{best.attainment_bound:>10.4%} {best.window_ns / NS_PER_S:>9g} {busiest:>27.2f} "
            f"{'' if achieved is None else f'{achieved:.4%}':>10}",
            flush=True,
        )
        print(f"  ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    if args.out is not None:
        args.out.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2)
            + "\n"
        )


if __name__ == "__main__":
    main()
