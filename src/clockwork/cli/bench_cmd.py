"""``clockwork bench --url``: drive a running Open Inference Protocol server (Clockwork's, Triton,
any KServe v2 server) over HTTP or gRPC with one of the simulator's workloads, in real time, and
write the same report as ``clockwork sim`` (``summary.json``, ``requests.parquet``, the goodput and
latency plots) into ``--out``; print the table.

The workload options are ``clockwork sim``'s (``--rate``, ``--load-factor``, ``--duration``,
``--slo-ms``, ``--seed``, ``--trace``...), except that ``--concurrency`` bounds the requests in
flight and closed-loop clients per model are ``--clients``. Rates given as a load factor need the
server's ideal capacity: ``--capacity-rps``, or ``--gpus`` devices of ``--profile``'s model.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import NoReturn

from clockwork.cli.help_format import HelpFormatter
from clockwork.cli.workload_args import add_shape_arguments
from clockwork.core.errors import ConfigurationError
from clockwork.core.units import DEFAULT_SLO_MS, ms_to_ns, s_to_ns

WORKLOADS = ("poisson", "azure", "closed", "bursty", "slo-sweep")
DEFAULT_PROFILE = "resnet50_v2-V100-32GB"
# workloads whose rate is --rate, or --load-factor x capacity without it
_RATE_WORKLOADS = ("poisson", "bursty", "slo-sweep")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        help="drive an Open Inference Protocol server (HTTP or gRPC) with a workload",
        description="Send a workload's requests, in real time, to a KServe v2 / Triton server "
        "over HTTP or gRPC, each with Triton's timeout parameter set to its SLO; write the same "
        "report as `clockwork sim` (summary.json, requests.parquet, PNG plots) into --out.",
        formatter_class=HelpFormatter,
        # no abbreviations: "--token SECRET" must not be read as --token-file and echoed back
        allow_abbrev=False,
    )
    p.add_argument("--url", required=True, help="http://host:port[/prefix] or grpc://host:port")
    p.add_argument(
        "--protocol", choices=("http", "grpc"), default=None, help="default: from the URL's scheme"
    )
    m = p.add_mutually_exclusive_group()
    m.add_argument(
        "--models",
        default=None,
        help="comma-separated server models; the workload's i-th model is the i-th of them",
    )
    m.add_argument(
        "--num-models",
        type=int,
        default=None,
        help="drive the first N READY "
        "models of the server's repository index, sorted by name (default: all)",
    )
    enc = p.add_mutually_exclusive_group()
    enc.add_argument(
        "--binary",
        dest="binary",
        action="store_true",
        default=True,
        help="HTTP: Triton binary tensors (the default)",
    )
    enc.add_argument(
        "--json", dest="binary", action="store_false", help="HTTP: JSON tensors instead of binary"
    )
    p.add_argument(
        "--inputs",
        choices=("zeros", "random"),
        default="zeros",
        help="input data (batch 1, the shapes of the model metadata)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=256,
        help="most requests in flight (and "
        "connections); an arrival beyond it is logged as CLIENT_DROPPED",
    )
    p.add_argument(
        "--workload", choices=WORKLOADS, default="poisson", help="arrival process of the requests"
    )
    p.add_argument("--duration", type=float, default=20.0, help="seconds of arrivals")
    p.add_argument("--slo-ms", type=float, default=DEFAULT_SLO_MS, help="each request's timeout")
    p.add_argument("--seed", type=int, default=1, help="seed of the arrivals")
    p.add_argument("--out", type=Path, default=None, help="report directory (none: no files)")
    g = p.add_argument_group("workload parameters (as clockwork sim)")
    g.add_argument(
        "--rate",
        type=float,
        default=None,
        help="poisson/bursty/slo-sweep: total "
        "requests per second (default: load factor x capacity)",
    )
    g.add_argument(
        "--load-factor",
        type=float,
        default=0.5,
        help="azure (and the others without --rate): mean rate as a fraction of the capacity",
    )
    g.add_argument(
        "--capacity-rps",
        type=float,
        default=None,
        help="the server's ideal "
        "capacity in requests/s (default: --gpus x the profile's throughput)",
    )
    g.add_argument(
        "--gpus",
        type=int,
        default=None,
        help="devices behind the server, for the capacity and the report",
    )
    g.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        help="with --gpus: shipped profile name or profile JSON path of the served model",
    )
    g.add_argument("--clients", type=int, default=1, help="closed: clients per model")
    add_shape_arguments(g)
    r = p.add_argument_group("run")
    r.add_argument(
        "--drain-s",
        type=float,
        default=10.0,
        help="at most this long after the last arrival for the answers",
    )
    r.add_argument(
        "--connect-timeout-s",
        type=float,
        default=5.0,
        help="how long to wait for the server to answer before the run",
    )
    r.add_argument(
        "--status-every",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between progress lines",
    )
    r.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    r.add_argument("--quiet", action="store_true", help="no progress line")
    r.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    s = p.add_argument_group("security (a secured server; see README, Security)")
    s.add_argument(
        "--token-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="send this bearer token; without it, $CLOCKWORK_TOKEN if set, else none",
    )
    s.add_argument(
        "--tls-ca",
        type=Path,
        default=None,
        metavar="PEM",
        help="https/grpcs: trust this CA for the server's certificate (default: the system's CAs)",
    )
    s.add_argument("--tls-cert", type=Path, default=None, metavar="PEM", help="client certificate")
    s.add_argument("--tls-key", type=Path, default=None, metavar="PEM", help="its private key")
    p.set_defaults(func=run)
    # a bad option is one line, as every other bad input here is (no usage block to scroll past)
    p.error = _one_line_error  # type: ignore[method-assign]


def _one_line_error(message: str) -> NoReturn:
    print(f"clockwork bench: error: {message} (see clockwork bench --help)", file=sys.stderr)
    sys.exit(2)


def _check(args: argparse.Namespace) -> None:
    positive = {
        "--duration": args.duration,
        "--slo-ms": args.slo_ms,
        "--concurrency": args.concurrency,
        "--status-every": args.status_every,
        "--connect-timeout-s": args.connect_timeout_s,
        "--minute-s": args.minute_s,
        "--clients": args.clients,
        "--sweep-period-s": args.sweep_period_s,
    }
    for name, value in positive.items():
        if not value > 0:  # also refuses NaN
            raise ConfigurationError(f"{name} must be > 0, got {value}")
    optional = {
        "--rate": args.rate,
        "--capacity-rps": args.capacity_rps,
        "--gpus": args.gpus,
        "--num-models": args.num_models,
    }
    for name, value in optional.items():
        if value is not None and not value > 0:
            raise ConfigurationError(f"{name} must be > 0, got {value}")
    if not args.drain_s >= 0 or not args.load_factor >= 0:
        raise ConfigurationError("--drain-s and --load-factor must be >= 0")


def _capacity(args: argparse.Namespace) -> float:
    """The server's ideal capacity in requests/s, or 0 when not known."""
    if args.capacity_rps is not None:
        return float(args.capacity_rps)
    if args.gpus is not None:
        from clockwork.cli.workload_args import profile_from_spec

        return float(args.gpus * profile_from_spec(args.profile).ideal_throughput_rps())
    return 0.0


def _check_capacity(args: argparse.Namespace, capacity: float) -> None:
    """Refuse a workload whose rate is a load factor of a capacity nobody gave."""
    if capacity > 0:
        return
    if args.workload == "azure":
        raise ConfigurationError(
            "--workload azure scales the trace to --load-factor x the server's capacity, which "
            "a client cannot measure: give --capacity-rps R (requests/s), or --gpus N of "
            "--profile's model"
        )
    if args.workload in _RATE_WORKLOADS and args.rate is None:
        raise ConfigurationError(
            f"--workload {args.workload} needs a rate: give --rate R (requests/s), or "
            "--capacity-rps R or --gpus N for --load-factor x that capacity"
        )


def run(args: argparse.Namespace) -> int:
    from clockwork.cli.workload_args import describe_workload, workload_factory
    from clockwork.client.bench import (
        discover_models,
        format_bench_lines,
        run_bench_url,
        write_bench_report,
    )
    from clockwork.client.credentials import credentials_from
    from clockwork.client.oip_client import parse_endpoint
    from clockwork.telemetry.report import format_table

    _check(args)
    endpoint = parse_endpoint(args.url, args.protocol)
    credentials = credentials_from(args.token_file, args.tls_ca, args.tls_cert, args.tls_key)
    capacity = _capacity(args)
    names = None
    if args.models is not None:
        names = [n.strip() for n in args.models.split(",") if n.strip()]
        if not names:
            raise ConfigurationError("--models lists no model")
    use_uvloop = not args.no_uvloop
    try:
        models, source = discover_models(
            endpoint.url,
            endpoint.protocol,
            names=names,
            count=args.num_models,
            connect_timeout_s=args.connect_timeout_s,
            use_uvloop=use_uvloop,
            credentials=credentials,
        )
        # checked once the server answered: an unreachable URL is the first thing to fix
        _check_capacity(args, capacity)
        # sim's factory reads closed-loop clients from --concurrency, here --clients
        wargs = copy.copy(args)
        wargs.concurrency = args.clients
        workload = workload_factory(wargs, models, capacity)()
        if not args.quiet:
            print(
                f"{args.duration:g} s of {args.workload} load on {len(models)} model(s) at "
                f"{endpoint.url} ({endpoint.protocol})",
                file=sys.stderr,
                flush=True,
            )
        result = run_bench_url(
            endpoint.url,
            endpoint.protocol,
            workload,
            models,
            ms_to_ns(args.slo_ms),
            args.concurrency,
            s_to_ns(args.duration),
            binary=args.binary,
            fill=args.inputs,
            seed=args.seed,
            drain_ns=s_to_ns(args.drain_s),
            ideal_capacity_rps=capacity,
            devices=args.gpus or 0,
            workload_info=describe_workload(workload, args),
            model_source=source,
            progress=None if args.quiet else sys.stderr,
            status_every_s=args.status_every,
            connect_timeout_s=args.connect_timeout_s,
            use_uvloop=use_uvloop,
            credentials=credentials,
        )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if args.out is not None:
        write_bench_report(args.out, result, plots=not args.no_plots)
    print(format_table(result.summary))
    print(format_bench_lines(result.summary))
    partial = bool(result.summary.get("partial"))
    if args.out is not None:
        note = " (partial: interrupted)" if partial else ""
        print(f"report written to {args.out}{note}", file=sys.stderr)
    # the shell's code for a run stopped by Ctrl-C (what ran is reported all the same)
    return 130 if partial else 0


__all__ = ["register", "run"]
