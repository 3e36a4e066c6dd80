"""Admission by probability in the simulator calibrated on this machine's CPU: the same
Poisson workload against the Clockwork policy with the paper's estimate (p99 of the last 10 runs)
and with a level (the log-normal fit's quantile; ``EstimatorConfig.level``), as `clockwork serve`
configures it (backlog admission and warm start on).

The calibrated profile and noise come from ``bench/calibrate_sim.py`` (its
``profile-cpu-calibrated.json`` and ``calibration.json``: medians of a real run of 16 MobileNetV2
copies on this CPU; sigma 0.207, stragglers 0.25% x2.15).

usage: python bench/admission_level.py [--levels 0,0.9,0.95,0.99] [--rates 40,60,80,100,120]
           [--slo-ms 100] [--models 16] [--duration 60] [--seeds 1,2,3]
           [--calibration bench/results/calibrate-sim] [--out bench/results/admission-level]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from clockwork.core.estimator import EstimatorConfig
from clockwork.core.events import ModelInfo
from clockwork.core.policies import ClockworkConfig, ClockworkPolicy
from clockwork.core.profile import DeviceKind, load_profile
from clockwork.core.units import NS_PER_MS, NS_PER_S
from clockwork.sim.noise import NoiseConfig
from clockwork.sim.runner import SimConfig, Simulation
from clockwork.workload import PoissonOpenLoop


def _outcome(result: object) -> tuple[float, float]:
    """(SLO attainment, share of requests that missed without an early refusal: answered at or
    after their deadline)."""
    table = result.requests.table()  # type: ignore[attr-defined]
    if not len(table.status):
        return 1.0, 0.0
    ok = table.status == (
        table.status_names.index("SUCCESS") if "SUCCESS" in table.status_names else -1
    )
    late = ~ok & (table.response_ns >= table.deadline_ns)
    return float(np.mean(ok)), float(np.mean(late))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", default="0,0.9,0.95,0.99")
    ap.add_argument("--rates", default="40,60,80,100,120")
    ap.add_argument("--slo-ms", type=float, default=100.0)
    ap.add_argument("--models", type=int, default=16)
    ap.add_argument("--duration", type=float, default=60.0, help="virtual seconds per run")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--cache-pages", type=int, default=64)
    ap.add_argument("--calibration", type=Path, default=Path("bench/results/calibrate-sim"))
    ap.add_argument("--out", type=Path, default=Path("bench/results/admission-level"))
    args = ap.parse_args()
    profile = load_profile(args.calibration / "profile-cpu-calibrated.json")
    fit = json.loads((args.calibration / "calibration.json").read_text())["fit"]
    noise = NoiseConfig(
        "lognormal+straggler",
        float(fit["sigma"]),
        float(fit["straggler_prob"]),
        max(1.0, float(fit["straggler_factor"])),
        # a calibration since BENCHMARKS s.36 fits the drift too; older ones have none
        float(fit.get("drift_sigma", 0.0)),
        int(fit.get("drift_tau_ns", NS_PER_S)),
    )
    kind = DeviceKind(profile.device_kind, profile.page_size_bytes, args.cache_pages)
    names = [f"{profile.model}-{i:04d}" for i in range(args.models)]
    models = [ModelInfo(n, (profile,)) for n in names]
    duration_ns = round(args.duration * NS_PER_S)
    slo_ns = round(args.slo_ms * NS_PER_MS)
    levels = [float(x) for x in args.levels.split(",")]
    rates = [float(x) for x in args.rates.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    rows = []
    for rate in rates:
        row: dict[str, object] = {"rate": rate}
        for level in levels:
            got = []
            late = []
            for seed in seeds:
                config = SimConfig(
                    duration_ns=duration_ns, gpus=1, device_kind=kind, noise=noise, seed=seed
                )
                policy = ClockworkPolicy(
                    ClockworkConfig(
                        warm_start=True,
                        backlog_admission=True,
                        estimator=EstimatorConfig(level=level),
                    )
                )
                workload = PoissonOpenLoop(names, rate, duration_ns, slo_ns, seed)
                a, m = _outcome(Simulation(config, models, workload, policy).run())
                got.append(a)
                late.append(m)
            row[f"{level:g}"] = got
            row[f"late {level:g}"] = late
            print(
                f"rate {rate:g}/s level {level:g}: "
                + ", ".join(f"{100 * a:.3f}%" for a in got)
                + " (late: "
                + ", ".join(f"{100 * x:.3f}%" for x in late)
                + ")",
                file=sys.stderr,
                flush=True,
            )
        rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"slo{args.slo_ms:g}.json").write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1)
    )
    head = " | ".join(f"level {lv:g}" if lv else "p99 of 10 (paper)" for lv in levels)
    lines = [
        f"| rate (req/s) | {head} |",
        "|---:|" + "---:|" * len(levels),
    ]
    for row in rows:
        cells = []
        for level in levels:
            got = row[f"{level:g}"]
            late = row[f"late {level:g}"]
            assert isinstance(got, list) and isinstance(late, list)
            cells.append(
                f"{100 * statistics.median(got):.2f}% ({100 * statistics.median(late):.2f}%)"
            )
        lines.append(f"| {row['rate']:g} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "median SLO attainment of the seeds (in brackets: requests answered at or after their "
        "deadline, i.e. not refused early)"
    )
    table = "\n".join(lines)
    (args.out / f"slo{args.slo_ms:g}.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
