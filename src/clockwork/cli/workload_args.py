"""The workload options every command that runs a workload shares (``clockwork sim``,
``clockwork bench``, ``clockwork bench-cluster``), and what they build."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from clockwork.core.profile import ModelProfile, load_profile, shipped_profile
from clockwork.core.units import ms_to_ns, s_to_ns
from clockwork.workload import (
    DEFAULT_AZURE_TRACE,
    AzureReplay,
    AzureTrace,
    Bursty,
    ClosedLoop,
    PoissonOpenLoop,
    SloSweep,
    Workload,
)

WORKLOADS = ("azure", "poisson", "closed", "bursty", "slo-sweep")
DEFAULT_PROFILE = "resnet50_v2-V100-32GB"


def add_shape_arguments(g: argparse._ArgumentGroup) -> None:
    """The workload options that shape arrivals, shared by every command that runs a workload
    (``workload_factory`` reads them)."""
    g.add_argument(
        "--trace",
        type=Path,
        default=DEFAULT_AZURE_TRACE,
        help="azure: invocations.csv of the Azure Functions 2019 trace",
    )
    g.add_argument(
        "--minute-s",
        type=float,
        default=60.0,
        help="azure: length of one trace minute in seconds (smaller compresses the trace)",
    )
    g.add_argument("--start-minute", type=int, default=0, help="azure: first trace minute")
    g.add_argument("--burst-on-s", type=float, default=1.0, help="bursty: seconds of each burst")
    g.add_argument("--burst-off-s", type=float, default=1.0, help="bursty: seconds between bursts")
    g.add_argument(
        "--sweep-factor", type=float, default=0.8, help="slo-sweep: SLO multiplier per period"
    )
    g.add_argument(
        "--sweep-period-s", type=float, default=10.0, help="slo-sweep: seconds per SLO step"
    )


def profile_from_spec(spec: str) -> ModelProfile:
    path = Path(spec)
    if path.suffix == ".json" or path.exists():
        return load_profile(path)
    return shipped_profile(spec)


def workload_factory(
    args: argparse.Namespace, names: list[str], capacity_rps: float
) -> Callable[[], Workload]:
    duration_ns = s_to_ns(args.duration)
    slo_ns = ms_to_ns(args.slo_ms)
    rate = args.rate if args.rate is not None else args.load_factor * capacity_rps
    if args.workload == "azure":
        trace = AzureTrace.load(args.trace)
        return lambda: AzureReplay(
            trace,
            names,
            capacity_rps,
            args.load_factor,
            duration_ns,
            slo_ns,
            args.seed,
            minute_ns=s_to_ns(args.minute_s),
            start_minute=args.start_minute,
        )
    if args.workload == "poisson":
        return lambda: PoissonOpenLoop(names, rate, duration_ns, slo_ns, args.seed)
    if args.workload == "closed":
        return lambda: ClosedLoop(names, args.concurrency, slo_ns, duration_ns)
    if args.workload == "bursty":
        return lambda: Bursty(
            names,
            2 * rate,
            0.0,
            s_to_ns(args.burst_on_s),
            s_to_ns(args.burst_off_s),
            duration_ns,
            slo_ns,
            args.seed,
        )
    return lambda: SloSweep(
        names,
        rate,
        duration_ns,
        slo_ns,
        args.sweep_factor,
        s_to_ns(args.sweep_period_s),
        args.seed,
    )


def describe_workload(workload: Workload, args: argparse.Namespace) -> dict[str, object]:
    d = dict(workload.describe())
    d.pop("models", None)  # thousands of names: the count is in the summary
    d.setdefault("name", args.workload)
    d["slo_ms"] = args.slo_ms
    return d
