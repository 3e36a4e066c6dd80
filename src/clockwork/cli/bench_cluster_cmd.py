"""``clockwork bench-cluster``: a real cluster on this machine under a workload, with the same
report as ``clockwork sim``.

Starts ``--workers`` ``clockwork worker --backend emulated`` processes on free 127.0.0.1 ports
(``--gpus-per-worker`` emulated devices each, serving ``--models`` copies of the profile), one
controller in this process and a load generator in the controller's event loop that submits each
arrival at its time (real time). At the end it drains, stops the workers (always: also on error or
Ctrl-C) and writes ``summary.json``, the Parquet logs and the plots into ``--out``, and prints the
table. ``extra`` carries the controller's CPU cost (this process: controller and generator) and
``late_submits`` (arrivals submitted more than 1 ms late: the generator or the controller could
not keep up).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from dataclasses import fields
from pathlib import Path
from types import FrameType

from clockwork.build import build_kind
from clockwork.cli.help_format import HelpFormatter
from clockwork.core.errors import ConfigurationError
from clockwork.core.policies import POLICIES, POLICY_HELP
from clockwork.core.profile import DEVICE_KINDS
from clockwork.core.units import DEFAULT_SLO_MS, NS_PER_MS, NS_PER_S, s_to_ns
from clockwork.workload import DEFAULT_AZURE_TRACE

DEFAULT_PROFILE = "resnet50_v2-V100-32GB"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench-cluster",
        help="run emulated workers and a controller on this machine under a workload",
        description="Start emulated worker processes on 127.0.0.1, a controller and a load "
        "generator in this process; drive a workload in real time and write the same report as "
        "`clockwork sim` (summary.json, Parquet logs, PNG plots) into --out.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument("--gpus-per-worker", type=int, default=2, help="emulated devices per worker")
    p.add_argument("--models", type=int, default=100, help="copies of the profiled model")
    p.add_argument(
        "--profile", default=DEFAULT_PROFILE, help="shipped profile name or a profile JSON path"
    )
    p.add_argument(
        "--workload",
        choices=("poisson", "azure"),
        default="poisson",
        help="arrival process of the requests",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        help="poisson: total requests per second (default: load factor x ideal capacity)",
    )
    p.add_argument(
        "--load-factor",
        type=float,
        default=0.5,
        help="azure (and poisson without "
        "--rate): mean rate as a fraction of the devices' ideal capacity",
    )
    p.add_argument(
        "--trace",
        type=Path,
        default=DEFAULT_AZURE_TRACE,
        help="azure: invocations.csv of the Azure Functions 2019 trace",
    )
    p.add_argument(
        "--minute-s", type=float, default=60.0, help="azure: length of one trace minute in seconds"
    )
    p.add_argument("--start-minute", type=int, default=0, help="azure: first trace minute")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of arrivals")
    p.add_argument("--slo-ms", type=float, default=DEFAULT_SLO_MS, help="each request's deadline")
    p.add_argument("--seed", type=int, default=1, help="seed of the arrivals")
    p.add_argument(
        "--policy",
        choices=sorted(POLICIES),
        default="clockwork",
        help=POLICY_HELP,
    )
    p.add_argument(
        "--schedule-ahead-ms",
        type=float,
        default=None,
        help="clockwork policy: schedule-ahead (default: the policy's)",
    )
    from clockwork.cli.policy_args import add_per_device_arguments

    add_per_device_arguments(p, serving=True)  # a live cluster: per device, as `serve`
    p.add_argument(
        "--noise-sigma",
        type=float,
        default=0.0,
        help="emulated workers: log-normal noise on durations",
    )
    p.add_argument(
        "--drain-s",
        type=float,
        default=10.0,
        help="at most this long after the last arrival for the answers",
    )
    p.add_argument(
        "--status-every", type=float, default=5.0, metavar="S", help="seconds between status lines"
    )
    p.add_argument("--out", type=Path, default=None, help="report directory (none: no files)")
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    p.add_argument("--quiet", action="store_true", help="no status lines")
    p.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    p.set_defaults(func=run)


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run(args: argparse.Namespace) -> int:
    import logging

    from clockwork.cli.policy_args import policy_from_args
    from clockwork.cli.workload_args import describe_workload, profile_from_spec, workload_factory
    from clockwork.core.policies import ClockworkConfig
    from clockwork.service.bench_cluster import WorkerProcesses, run_bench
    from clockwork.telemetry.report import format_table, write_report
    from clockwork.telemetry.summary import RunInfo, summarize
    from clockwork.transport import loop_factory

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.workers < 1 or args.gpus_per_worker < 1 or args.models < 1:
        raise ConfigurationError("--workers, --gpus-per-worker and --models must be >= 1")
    if args.duration <= 0 or args.slo_ms <= 0 or args.drain_s < 0 or args.status_every <= 0:
        raise ConfigurationError(
            "--duration, --slo-ms and --status-every must be > 0, --drain-s >= 0"
        )
    if args.rate is not None and args.rate <= 0:
        raise ConfigurationError(f"--rate must be > 0, got {args.rate}")
    profile = profile_from_spec(args.profile)
    kind = DEVICE_KINDS.get(profile.device_kind)
    if kind is None:
        raise ConfigurationError(
            f"profile {args.profile!r} is for device kind "
            f"{profile.device_kind!r}, which is not one of "
            f"{sorted(DEVICE_KINDS)}"
        )
    gpus = args.workers * args.gpus_per_worker
    names = [f"{profile.model}-{i:04d}" for i in range(args.models)]
    capacity = gpus * profile.ideal_throughput_rps()
    if args.schedule_ahead_ms is None:
        args.schedule_ahead_ms = ClockworkConfig().schedule_ahead_ns / NS_PER_MS
    workload = workload_factory(args, names, capacity)()
    policy = policy_from_args(args.policy, args)
    duration_ns = s_to_ns(args.duration)

    def status(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGTERM, _sigterm)
    log_dir = args.out / "workers" if args.out is not None else None
    try:
        with WorkerProcesses(
            args.workers,
            args.gpus_per_worker,
            args.models,
            args.profile,
            noise_sigma=args.noise_sigma,
            log_dir=log_dir,
        ) as procs:
            if not args.quiet:
                print(
                    f"started {args.workers} worker(s) x {args.gpus_per_worker} emulated "
                    f"{kind.name} at {', '.join(f'{h}:{p}' for h, p in procs.addresses)}; "
                    f"{args.duration:g} s of {args.workload} load",
                    file=sys.stderr,
                    flush=True,
                )
            with asyncio.Runner(loop_factory=loop_factory(not args.no_uvloop)) as runner:
                result = runner.run(
                    run_bench(
                        policy,
                        procs.addresses,
                        workload,
                        duration_ns,
                        drain_ns=s_to_ns(args.drain_s),
                        status_every_s=args.status_every,
                        status=None if args.quiet else status,
                        check_alive=procs.check_alive,
                        link_secret=procs.secret,
                    )
                )
    except KeyboardInterrupt:
        print("interrupted; workers stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    n = result.submitted
    info = RunInfo(
        policy=policy.name,
        workload=describe_workload(workload, args),
        duration_ns=duration_ns,
        devices=gpus,
        models=args.models,
        seed=args.seed,
        ideal_capacity_rps=capacity,
        sim_wall_s=result.wall_s,
        scheduler_cpu_s=result.cpu_s,
        extra={
            "mode": "bench-cluster",
            "build": build_kind(),
            "workers": args.workers,
            "gpus_per_worker": args.gpus_per_worker,
            "controller_cpu_s": result.cpu_s,
            "controller_cpu_us_per_request": (1e6 * result.cpu_s / n) if n else None,
            "late_submits": result.late_submits,
            "max_submit_lateness_ms": result.max_submit_lateness_ns / NS_PER_MS,
            "mean_submit_lateness_ms": result.mean_submit_lateness_ns / NS_PER_MS,
            "submitted": n,
            "responses": result.responses,
            "unanswered": result.unanswered,
            "unfinished_actions": result.unfinished_actions,
            "run_end_s": result.end_ns / NS_PER_S,
            "startup_s": result.startup_s,
            "profile": profile.to_json(),
            "device_kind": {f.name: getattr(kind, f.name) for f in fields(kind)},
            "noise_sigma": args.noise_sigma,
            "schedule_ahead_ms": args.schedule_ahead_ms,
        },
    )
    requests, actions = result.requests.table(), result.actions.table()
    summary = summarize(requests, actions, info)
    if args.out is not None:
        write_report(args.out, summary, requests, actions, plots=not args.no_plots)
    print(format_table(summary))
    print(
        f"controller CPU {result.cpu_s:.2f} s = "
        f"{(1e6 * result.cpu_s / n) if n else 0:.1f} us/request; late submits "
        f"{result.late_submits} of {n} (max {result.max_submit_lateness_ns / NS_PER_MS:.2f} "
        f"ms)"
    )
    if args.out is not None:
        print(f"report written to {args.out}", file=sys.stderr)
    return 0


__all__ = ["register", "run"]
