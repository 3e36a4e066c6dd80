"""``clockwork sim``: one simulated run (or several policies side by side) with a full report."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from clockwork.build import build_kind
from clockwork.cli.help_format import HelpFormatter
from clockwork.cli.policy_args import (
    DEFAULT_ADMISSION_LEVEL,
    add_as_served_arguments,
    add_per_device_arguments,
    policy_from_args,
)
from clockwork.cli.workload_args import (
    DEFAULT_PROFILE,
    WORKLOADS,
    add_shape_arguments,
    describe_workload,
    profile_from_spec,
    workload_factory,
)
from clockwork.core.errors import ConfigurationError
from clockwork.core.events import ModelInfo
from clockwork.core.policies import (
    POLICIES,
    POLICY_HELP,
    SIMULATED_ROOM_NS,
    SIMULATED_SCHEDULE_AHEAD_NS,
    ClockworkConfig,
    simulated_schedule_ahead_ns,
)
from clockwork.core.profile import (
    DEVICE_KINDS,
    DeviceKind,
)
from clockwork.core.units import DEFAULT_SLO_MS, NS_PER_MS, NS_PER_S, ms_to_ns, s_to_ns, us_to_ns
from clockwork.sim.host import HostConfig
from clockwork.sim.noise import NOISE_KINDS, NoiseConfig
from clockwork.sim.runner import SimConfig, Simulation

_NOISE = NoiseConfig()
_CW = ClockworkConfig()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sim",
        help="simulate a cluster in virtual time and report on it",
        description="Run the real scheduler against simulated workers in virtual time. "
        "Writes summary.json, request and action logs (Parquet) and PNG plots into --out.",
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--workload", choices=WORKLOADS, default="poisson", help="arrival process of the requests"
    )
    p.add_argument(
        "--models", type=int, default=100, help="number of models (copies of the profiled model)"
    )
    p.add_argument("--gpus", type=int, default=6, help="simulated GPUs in all")
    p.add_argument("--gpus-per-worker", type=int, default=2, help="simulated GPUs per worker")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of arrivals")
    p.add_argument("--slo-ms", type=float, default=DEFAULT_SLO_MS, help="each request's deadline")
    p.add_argument(
        "--policy",
        choices=sorted(POLICIES),
        default="clockwork",
        help=POLICY_HELP,
    )
    p.add_argument(
        "--compare",
        default=None,
        help="comma-separated policies to run on the same "
        "workload and seed, side by side (e.g. clockwork,reactive)",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the arrivals and the noise")
    p.add_argument("--out", type=Path, default=None, help="report directory (none: no files)")
    p.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        help="shipped profile name, or a path "
        "to a profile JSON file (e.g. one written by `clockwork profile`)",
    )
    p.add_argument(
        "--cache-pages",
        type=int,
        default=None,
        help="weights cache of each device "
        "in pages of the profile's page size (default: the device kind's)",
    )
    g = p.add_argument_group("workload parameters")
    g.add_argument(
        "--load-factor",
        type=float,
        default=0.5,
        help="azure: mean rate as a fraction of the devices' ideal capacity",
    )
    g.add_argument(
        "--rate",
        type=float,
        default=None,
        help="poisson/bursty/slo-sweep: total "
        "requests per second (default: load factor x ideal capacity)",
    )
    g.add_argument("--concurrency", type=int, default=1, help="closed: clients per model")
    add_shape_arguments(g)
    s = p.add_argument_group("simulation")
    s.add_argument(
        "--noise", choices=NOISE_KINDS, default=_NOISE.kind, help="kind of execution-time noise"
    )
    s.add_argument(
        "--noise-sigma", type=float, default=_NOISE.sigma, help="log-normal sigma of the noise"
    )
    s.add_argument(
        "--straggler-prob",
        type=float,
        default=_NOISE.straggler_prob,
        help="probability that an execution straggles",
    )
    s.add_argument(
        "--straggler-factor",
        type=float,
        default=_NOISE.straggler_factor,
        help="how many times longer a straggler runs",
    )
    s.add_argument(
        "--noise-drift-sigma",
        type=float,
        default=_NOISE.drift_sigma,
        help="a slow drift of each device's speed on top of the noise: the standard deviation "
        "of its log (an Ornstein-Uhlenbeck process; 0: none)",
    )
    s.add_argument(
        "--noise-drift-tau-ms",
        type=float,
        default=_NOISE.drift_tau_ns / NS_PER_MS,
        help="the drift's correlation time",
    )
    s.add_argument(
        "--slow-devices",
        type=int,
        default=0,
        help="this many devices (the first ones) run --slow-factor times slower than the profile",
    )
    s.add_argument(
        "--slow-factor", type=float, default=2.0, help="how much slower the slow devices run"
    )
    s.add_argument("--network-delay-us", type=float, default=100.0, help="one-way")
    s.add_argument(
        "--schedule-ahead-ms",
        type=float,
        default=None,
        help="clockwork: how far ahead it plans (at most; tight SLOs shorten it). The "
        "simulated controller never lags, so by default it plans closer "
        f"({SIMULATED_SCHEDULE_AHEAD_NS / NS_PER_MS:g} ms, or the links' round trip and "
        f"{SIMULATED_ROOM_NS / NS_PER_MS:g} ms if longer) than a real one "
        f"({_CW.schedule_ahead_ns / NS_PER_MS:g} ms, the default with --as-served)",
    )
    add_per_device_arguments(s, serving=False)
    add_as_served_arguments(s)
    s.add_argument(
        "--host",
        type=Path,
        default=None,
        metavar="FILE.json",
        help="simulate the serving host in front of the scheduler too: its loop's and its "
        "client's CPU cost per request, its cores, the door's limits as serve runs them, its "
        "worker's turnaround between Infers "
        "(clockwork.sim.host; bench/calibrate_sim.py writes the file from a real run)",
    )
    s.add_argument(
        "--drain-s",
        type=float,
        default=10.0,
        help="virtual seconds after the last arrival for queued work to finish",
    )
    s.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    s.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=run)


# what a ``--host`` file must give (the rest have defaults)
_HOST_REQUIRED = frozenset({"take_ns", "answer_ns", "refuse_ns"})


def host_costs(host: HostConfig) -> dict[str, float]:
    """What a ``--host`` file holds: every field but the door's limits (``serve``'s)."""
    return {f.name: getattr(host, f.name) for f in fields(host) if f.name != "door"}


def host_config_from_file(path: Path) -> HostConfig:
    """The ``--host`` file: a JSON object of ``HostConfig``'s costs and cores."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigurationError(f"--host {path}: {e}") from e
    names = {f.name for f in fields(HostConfig) if f.name != "door"}
    if not isinstance(raw, dict) or not set(raw) <= names or not set(raw) >= _HOST_REQUIRED:
        raise ConfigurationError(
            f"--host {path}: want a JSON object with take_ns, answer_ns and refuse_ns, and "
            f"optionally {', '.join(sorted(names - _HOST_REQUIRED))}; got {raw!r}"[:400]
        )
    ints = {
        "take_ns",
        "answer_ns",
        "refuse_ns",
        "client_send_ns",
        "client_read_ns",
        "worker_turnaround_ns",
    }
    try:
        values: dict[str, object] = {
            k: (
                tuple(int(x) for x in v)
                if k == "worker_turnaround_quantiles_ns"
                else int(v)
                if k in ints
                else float(v)
            )
            for k, v in raw.items()
        }
        return HostConfig(**values)  # type: ignore[arg-type]
    except (TypeError, ValueError) as e:
        raise ConfigurationError(f"--host {path}: {e}") from e


def compared_policies(spec: str) -> list[str]:
    """The policy names of ``--compare``, each checked before any runs."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        raise ConfigurationError(
            f"--compare: unknown polic{'y' if len(unknown) == 1 else 'ies'} "
            f"{', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(sorted(POLICIES))}"
        )
    if not names:
        raise ConfigurationError("--compare names no policy")
    return names


def run(args: argparse.Namespace) -> int:
    from clockwork.cli.interrupt import StopOnInterrupt
    from clockwork.telemetry.progress import ProgressPrinter
    from clockwork.telemetry.report import format_comparison, format_table, write_report
    from clockwork.telemetry.summary import RunInfo, summarize

    if args.models <= 0:
        raise ConfigurationError(f"--models must be > 0, got {args.models}")
    if args.duration <= 0 or args.slo_ms <= 0:
        raise ConfigurationError("--duration and --slo-ms must be > 0")
    if args.schedule_ahead_ms is None:
        ahead_ns = (
            _CW.schedule_ahead_ns
            if args.as_served
            else simulated_schedule_ahead_ns(us_to_ns(args.network_delay_us))
        )
        args.schedule_ahead_ms = ahead_ns / NS_PER_MS
    if args.admission_level is None:  # resolved here, so that the report says which
        args.admission_level = DEFAULT_ADMISSION_LEVEL if args.as_served else 0.0
    kinds = DEVICE_KINDS
    profile = profile_from_spec(args.profile)
    kind = kinds.get(profile.device_kind)
    if args.cache_pages is not None:
        if args.cache_pages <= 0:
            raise ConfigurationError(f"--cache-pages must be > 0, got {args.cache_pages}")
        kind = DeviceKind(profile.device_kind, profile.page_size_bytes, args.cache_pages)
    if kind is None:
        raise ConfigurationError(
            f"profile {args.profile!r} is for device kind "
            f"{profile.device_kind!r}, which is not one of {sorted(kinds)}; "
            "give its cache size with --cache-pages"
        )
    names = [f"{profile.model}-{i:04d}" for i in range(args.models)]
    models = [ModelInfo(n, (profile,)) for n in names]
    capacity = args.gpus * profile.ideal_throughput_rps()
    make_workload = workload_factory(args, names, capacity)
    try:
        noise = NoiseConfig(
            args.noise,
            args.noise_sigma,
            args.straggler_prob,
            args.straggler_factor,
            args.noise_drift_sigma,
            ms_to_ns(args.noise_drift_tau_ms),
        )
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    config = SimConfig(
        duration_ns=s_to_ns(args.duration),
        gpus=args.gpus,
        gpus_per_worker=args.gpus_per_worker,
        device_kind=kind,
        network_delay_ns=us_to_ns(args.network_delay_us),
        noise=noise,
        seed=args.seed,
        drain_ns=s_to_ns(args.drain_s),
        slow_devices=args.slow_devices,
        slow_factor=args.slow_factor,
        host=None if args.host is None else host_config_from_file(args.host),
    )
    policies = compared_policies(args.compare) if args.compare else [args.policy]
    summaries: dict[str, dict[str, object]] = {}
    stop = StopOnInterrupt("writing the report of what ran")
    for name in policies:
        if stop.requested:
            print(f"skipped policy {name}: interrupted", file=sys.stderr)
            continue
        workload = make_workload()
        policy = policy_from_args(name, args)
        printer = None if args.quiet else ProgressPrinter(config.duration_ns + config.drain_ns)
        progress = None if printer is None else (lambda t, n, pr=printer: pr.update(t, n))
        sim = Simulation(config, models, workload, policy, progress, should_stop=stop)
        with stop:
            result = sim.run()
        if printer is not None:
            printer.close(result.end_ns, result.responses, finished=not result.interrupted)
        info = RunInfo(
            policy=policy.name,
            workload=describe_workload(workload, args),
            # a partial run's rates are over the arrivals it saw
            duration_ns=(
                max(1, min(result.end_ns, config.duration_ns))
                if result.interrupted
                else config.duration_ns
            ),
            partial=result.interrupted,
            devices=args.gpus,
            models=args.models,
            seed=args.seed,
            ideal_capacity_rps=capacity,
            sim_wall_s=result.wall_s,
            scheduler_cpu_s=result.scheduler_cpu_s,
            extra={
                "build": build_kind(),
                "unanswered": result.unanswered,
                "events": result.events,
                "sim_cpu_s": result.cpu_s,
                "profile": profile.to_json(),
                "device_kind": {f.name: getattr(kind, f.name) for f in fields(kind)},
                "noise": {f.name: getattr(noise, f.name) for f in fields(noise)},
                "network_delay_us": args.network_delay_us,
                "schedule_ahead_ms": args.schedule_ahead_ms,
                "per_device_estimates": policy.per_device_estimates,
                "as_served": args.as_served,
                "admission_level": args.admission_level,
                "slow_devices": args.slow_devices,
                "slow_factor": args.slow_factor,
                "host": None if config.host is None else host_costs(config.host),
                "responses": result.responses,
                "samples": {
                    "t_s": [t / NS_PER_S for t, _, _ in result.samples],
                    "pending": [n for _, n, _ in result.samples],
                    "rss_mb": [round(m / 2**20, 1) for _, _, m in result.samples],
                },
            },
        )
        requests, actions = result.requests.table(), result.actions.table()
        summary = summarize(requests, actions, info)
        summaries[policy.name] = summary
        if args.out is not None:
            out = args.out / policy.name if len(policies) > 1 else args.out
            write_report(out, summary, requests, actions, plots=not args.no_plots)
        if len(policies) == 1:
            print(format_table(summary))
    if len(policies) > 1:
        print(format_comparison(summaries))
        if args.out is not None:
            (args.out / "comparison.json").write_text(
                json.dumps(
                    {
                        k: {
                            key: v.get(key)
                            for key in (
                                "partial",
                                "slo_attainment",
                                "goodput_rps",
                                "offered_rps",
                                "latency_ms",
                                "delivered_latency_ms",
                                "refused",
                                "late",
                            )
                        }
                        for k, v in summaries.items()
                    },
                    indent=2,
                )
                + "\n"
            )
    if args.out is not None:
        partial = " (partial: interrupted)" if stop.requested else ""
        print(f"report written to {args.out}{partial}", file=sys.stderr)
    # the shell's code for a run stopped by Ctrl-C (what ran is reported all the same)
    return 130 if stop.requested else 0
