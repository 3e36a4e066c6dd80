"""``clockwork controller``: connect to workers and run the scheduler against them.

It has no client API (``clockwork serve --no-local-worker --workers ...`` adds the HTTP/gRPC
front door): the controller connects, keeps its workers joined (reconnecting as they come and go)
and prints a status line every ``--status-every`` seconds. ``--demo-rps R`` generates its own
Poisson load of R requests per second spread uniformly over the workers' models, to exercise a
cluster end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import time
from pathlib import Path

from clockwork.cli.help_format import HelpFormatter
from clockwork.cli.log_setup import add_log_arguments, setup_logging
from clockwork.cli.loop_priority_args import add_loop_priority_argument, apply_loop_priority
from clockwork.cli.policy_args import add_warm_arguments, policy_from_warm_args
from clockwork.cluster_ray.cli_args import (
    add_ray_arguments,
    ray_pool_from_args,
    start_ray_pool,
    stop_ray_pool,
)
from clockwork.core.errors import ConfigurationError
from clockwork.core.policies import POLICIES, POLICY_HELP
from clockwork.core.units import DEFAULT_SLO_MS, ms_to_ns
from clockwork.transport import loop_factory
from clockwork.transport.cluster_secret import (
    add_secret_arguments,
    require_secret,
    serve_secret,
)
from clockwork.transport.handshake import ID_BYTES

log = logging.getLogger("clockwork.controller")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "controller",
        help="schedule requests onto running workers",
        description="Connect to workers, keep them joined and run the scheduler, with no "
        "client API (`clockwork serve --no-local-worker --workers ...` adds the HTTP/gRPC "
        "front door): prints a status line every few seconds; --demo-rps generates a "
        "synthetic load. Exits 1 if no worker ever joined.",
        formatter_class=HelpFormatter,
        # no abbreviations: "--token SECRET" must not be read as --token-file and echoed back
        allow_abbrev=False,
    )
    p.add_argument(
        "--workers",
        default="",
        metavar="HOST:PORT,...",
        help="worker addresses, comma separated (needed unless --ray)",
    )
    p.add_argument(
        "--policy",
        choices=sorted(POLICIES),
        default="clockwork",
        help=POLICY_HELP,
    )
    add_warm_arguments(p)
    p.add_argument(
        "--status-every", type=float, default=5.0, metavar="S", help="seconds between status lines"
    )
    p.add_argument(
        "--demo-rps",
        type=float,
        default=0.0,
        metavar="R",
        help="generate R requests per second (Poisson) over the workers' models",
    )
    p.add_argument(
        "--demo-slo-ms",
        type=float,
        default=DEFAULT_SLO_MS,
        metavar="MS",
        help="deadline of the generated requests",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="stop after S seconds (default: run until interrupted)",
    )
    p.add_argument(
        "--log-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the request and action logs here as rotating Parquet files",
    )
    p.add_argument(
        "--log-every", type=float, default=10.0, metavar="S", help="seconds between log files"
    )
    add_secret_arguments(p)
    p.add_argument(
        "--take-over",
        action="store_true",
        help="take over workers that already serve another controller (logged by them as a "
        "takeover; without it, such a worker refuses us and we retry)",
    )
    p.add_argument("--id", default="controller", help="controller id, shown in the workers' logs")
    p.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    add_loop_priority_argument(p)
    p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    add_log_arguments(p)
    add_ray_arguments(p, backend="emulated")
    p.set_defaults(func=run)


def _addresses(text: str) -> list[tuple[str, int]]:
    from clockwork.cli.addresses import parse_addresses

    out = parse_addresses(text)
    if not out:
        raise ConfigurationError("--workers names no address (give --workers or --ray)")
    return out


def run(args: argparse.Namespace) -> int:
    from clockwork.service.controller_service import ControllerService
    from clockwork.service.telemetry import StatusLine

    setup_logging(args.log_format, args.verbose)
    workers = _addresses(args.workers) if args.workers or args.ray is None else []
    if args.status_every <= 0 or args.demo_rps < 0 or args.demo_slo_ms <= 0:
        raise ConfigurationError("--status-every and --demo-slo-ms must be > 0, --demo-rps >= 0")
    if args.ray is not None and not workers and not args.insecure_no_auth:
        secret: bytes | None = serve_secret(args.cluster_secret_file, False)  # Ray hands it on
    else:
        secret = require_secret(args.cluster_secret_file, args.insecure_no_auth, "controller")
    if len(args.id.encode()) > ID_BYTES:
        raise ConfigurationError(f"--id {args.id!r} is over {ID_BYTES} bytes")
    service = ControllerService(
        policy_from_warm_args(args),
        workers,
        controller_id=args.id,
        link_secret=secret,
        take_over=args.take_over,
    )

    async def demo() -> None:
        rng = random.Random(0)
        tasks: set[asyncio.Task[object]] = set()
        try:
            while True:
                await asyncio.sleep(rng.expovariate(args.demo_rps))
                models = sorted(service.models)
                if not models or not service.workers:
                    continue
                t = asyncio.create_task(
                    service.submit(rng.choice(models), timeout_ns=ms_to_ns(args.demo_slo_ms))
                )
                tasks.add(t)
                t.add_done_callback(tasks.discard)
        finally:
            # stop generating, but let what was sent be answered before the controller closes
            if tasks:
                await asyncio.wait(tasks, timeout=2 * args.demo_slo_ms / 1000 + 1)
            for left in tasks:
                left.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def status() -> None:
        line = StatusLine(service, len(workers))
        while True:
            await asyncio.sleep(args.status_every)
            line.expected_workers = service.configured_workers  # Ray adds workers as it goes
            log.info("%s", line.line())

    files = None
    if args.log_dir is not None:
        if args.log_every <= 0:
            raise ConfigurationError("--log-every must be > 0")
        from clockwork.service.log_files import LogFiles
        from clockwork.service.telemetry import ControllerTelemetry

        telemetry = ControllerTelemetry()
        telemetry.attach(service)
        telemetry.start(time.monotonic_ns())
        files = LogFiles(telemetry, args.log_dir)

    async def rotate() -> None:
        while files is not None:
            await asyncio.sleep(args.log_every)
            files.rotate()

    ray_pool = ray_pool_from_args(args, secret, None)

    async def main() -> None:
        apply_loop_priority(args)  # on the loop's thread, before it starts others
        from clockwork.service.interpreter_lock import bound_lock_waits

        bound_lock_waits()  # the loop shares the interpreter with the decode pool's threads
        await service.start()
        from clockwork.service.startup_heap import freeze_startup_heap

        freeze_startup_heap()  # what startup built is never scanned by a collection again
        ray_watcher = start_ray_pool(ray_pool, service)
        tasks = [asyncio.create_task(status()), asyncio.create_task(rotate())]
        if args.demo_rps > 0:
            tasks.append(asyncio.create_task(demo()))
        try:
            if args.duration is None:
                await asyncio.Event().wait()
            else:
                await asyncio.sleep(args.duration)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await service.close()
            await stop_ray_pool(ray_pool, ray_watcher)
            if files is not None:
                files.telemetry.finish(time.monotonic_ns())
                files.close()
                log.info("logs written to %s", args.log_dir)
            s = service.stats
            answers = ", ".join(
                f"{k.value} {v}" for k, v in sorted(s.responses.items(), key=lambda kv: kv[0].value)
            )
            log.info("final: %s", answers or "no requests")

    try:
        with asyncio.Runner(loop_factory=loop_factory(not args.no_uvloop)) as runner:
            runner.run(main())
    except KeyboardInterrupt:
        pass
    if service.stats.joins == 0:
        errors = service.connect_errors()
        tried = "; ".join(
            f"{h}:{p}: {errors.get(f'{h}:{p}', 'connected, but never joined (see the log)')}"
            for h, p in workers
        )
        print(f"clockwork controller: error: no worker ever joined ({tried})", file=sys.stderr)
        return 1
    return 0
