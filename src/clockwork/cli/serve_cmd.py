"""``clockwork serve``: the embedded default server, one command.

A controller with the Open Inference Protocol front door (HTTP on ``--http-port``, gRPC on
``--grpc-port``, Prometheus metrics at ``/metrics``) and one local worker process (torch backend,
on CUDA if present, else the CPU) serving ``--repository``. Without ``--repository`` a demo
repository (``demo-repo/``: four small MobileNetV2 models) is created on first run; models without
a profile for the local device are profiled once before serving. ``--workers`` attaches remote
workers besides (``--no-local-worker``: only those). Once joined, the local worker is started
again whenever it exits (``clockwork.service.supervisor``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from clockwork.cli.config_file import add_config_arguments, apply_config, effective_config_toml
from clockwork.cli.help_format import HelpFormatter
from clockwork.cli.limits_args import add_limits_arguments, limits_from_args
from clockwork.cli.log_setup import add_log_arguments, setup_logging
from clockwork.cli.loop_priority_args import add_loop_priority_argument, apply_loop_priority
from clockwork.cli.policy_args import add_warm_arguments, policy_from_warm_args
from clockwork.cli.security_args import add_security_arguments, security_from_args
from clockwork.cli.serve_startup import check_ports_free, unless_stopped
from clockwork.cluster_ray.cli_args import (
    add_ray_arguments,
    ray_pool_from_args,
    start_ray_pool,
    stop_ray_pool,
    wants_controller_actor,
)
from clockwork.core.errors import ConfigurationError
from clockwork.core.policies import POLICIES, POLICY_HELP
from clockwork.core.units import DEFAULT_SLO_MS
from clockwork.transport.cluster_secret import add_secret_arguments, child_env, serve_secret

if TYPE_CHECKING:  # imported lazily at run time: `clockwork --help` stays fast
    from clockwork.cluster_ray.pool import RayWorkerPool
    from clockwork.frontend.server import ControllerModelServer
    from clockwork.service.controller_service import ControllerService
    from clockwork.service.supervisor import ChildSupervisor

DEMO_REPOSITORY = Path("demo-repo")
LOCAL_WORKER_ID = "local"
#: the local worker profiles unprofiled models before it listens: allow for that
LOCAL_JOIN_TIMEOUT_S = 900.0
# the longest the banner waits for the warm start
WARM_WAIT_S = 60.0
REMOTE_JOIN_WAIT_S = 10.0
#: reconnect attempts to a worker that went away back off at most to this: a restarted local
#: worker rejoins within this of listening again (a refused connect costs next to nothing)
RECONNECT_BACKOFF_S = (0.05, 0.5)

log = logging.getLogger("clockwork.serve")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the server: controller, front door (HTTP/gRPC) and a local worker",
        description="Serve the models of a repository over the Open Inference Protocol "
        "(KServe v2, Triton-compatible) with a controller and one local worker process.",
        formatter_class=HelpFormatter,
        # no abbreviations: "--token SECRET" must not be read as --token-file and echoed back
        allow_abbrev=False,
    )
    add_config_arguments(p)  # first: it notes which of the options below the command line gives
    p.add_argument(
        "--repository",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"model repository (default: {DEMO_REPOSITORY}/, a demo repository "
        "created on first run)",
    )
    p.add_argument(
        "--demo-forms",
        default="builtin,onnx",
        metavar="FORMS",
        help="without --repository: the forms the demo models may take (builtin, onnx, pt2); "
        "the fastest here, timed when the demo repository is made, is served "
        "(builtin: no export, no timing)",
    )
    p.add_argument("--http-port", type=int, default=8000, help="HTTP/REST port")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (0: no gRPC server)")
    p.add_argument(
        "--workers",
        default="",
        metavar="HOST:PORT,...",
        help="remote workers to attach besides the local one",
    )
    p.add_argument(
        "--workers-share-memory",
        action="store_true",
        help="the --workers run on this host, started with --shared-inputs: large inputs reach "
        "them as shared-memory segments, not over TCP (the local worker always does)",
    )
    p.add_argument(
        "--no-local-worker",
        action="store_true",
        help="start no local worker (serve only --workers)",
    )
    add_secret_arguments(p, insecure=False)  # the local worker gets a random one by default
    p.add_argument("--device", default="auto", help="local worker: auto, cpu or cuda:N")
    p.add_argument("--threads", type=int, default=1, help="local worker: torch CPU threads")
    p.add_argument(
        "--policy",
        choices=sorted(POLICIES),
        default="clockwork",
        help=POLICY_HELP,
    )
    add_warm_arguments(p)
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the server keeps which models were asked for most recently, so that a "
        "restart warms them first (default: $XDG_STATE_HOME/clockwork, else "
        "~/.local/state/clockwork)",
    )
    p.add_argument(
        "--default-slo-ms",
        type=float,
        default=DEFAULT_SLO_MS,
        help="deadline of a request without timeout, for models without their own",
    )
    p.add_argument(
        "--max-body-mb",
        type=float,
        default=64.0,
        help="largest request body (HTTP) or message (gRPC)",
    )
    p.add_argument(
        "--decode-processes",
        type=int,
        default=1,
        metavar="N",
        help="processes that decode large request bodies (JSON, gzip, big gRPC messages) off "
        "the controller's timed loop (0: decode on the loop)",
    )
    p.add_argument(
        "--status-interval", type=float, default=10.0, help="seconds between status lines (0: none)"
    )
    p.add_argument(
        "--log-dir",
        type=Path,
        default=None,
        help="write the request and action logs (rotating Parquet) here",
    )
    p.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    add_loop_priority_argument(p)
    p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    add_log_arguments(p)
    add_security_arguments(p)
    add_limits_arguments(p)
    add_ray_arguments(p, backend="torch", controller_actor=True)  # --ray: Ray's workers
    p.set_defaults(func=run)


def ensure_demo_repository(
    root: Path, device: str = "auto", forms: str = "builtin,onnx", threads: int = 1
) -> None:
    """Create the demo repository at ``root`` unless it already holds models for this device
    kind, in the fastest of ``forms`` here (``clockwork.cli.demo_repository``)."""
    from clockwork.cli.demo_state import ready_without_torch

    if ready_without_torch(root, device):
        return
    from clockwork.cli.demo_repository import ensure_demo_repository as ensure
    from clockwork.cli.demo_repository import parse_forms

    ensure(root, device, threads=threads, forms=parse_forms(forms))


def _check_port(name: str, port: int, allow_zero: bool = False) -> None:
    if not (0 if allow_zero else 1) <= port < 65536:
        raise ConfigurationError(f"--{name} {port} is not a port number")


def run(args: argparse.Namespace) -> int:
    from clockwork.cli.addresses import parse_addresses
    from clockwork.service.bench_cluster import free_ports, spawn_child
    from clockwork.service.supervisor import ChildSupervisor
    from clockwork.transport import loop_factory

    apply_config(args)  # --config FILE.toml: every option the command line did not give
    if args.print_config:
        print(effective_config_toml(args), end="")
        return 0
    setup_logging(args.log_format, args.verbose)
    _check_port("http-port", args.http_port)
    _check_port("grpc-port", args.grpc_port, allow_zero=True)
    check_ports_free(args.host, [("--http-port", args.http_port), ("--grpc-port", args.grpc_port)])
    if args.default_slo_ms <= 0 or args.max_body_mb <= 0 or args.threads < 1:
        raise ConfigurationError("--default-slo-ms and --max-body-mb must be > 0, --threads >= 1")
    if args.decode_processes < 0:
        raise ConfigurationError("--decode-processes must be >= 0")
    limits_from_args(args)  # a bad limit is refused before anything starts
    # before anything starts: a bad token or certificate is an error, not a failed handshake
    args.security = security_from_args(args)
    remote = parse_addresses(args.workers)
    secret = serve_secret(args.cluster_secret_file, bool(remote))
    args.no_local_worker |= args.ray is not None
    if args.no_local_worker and not remote and args.ray is None:
        raise ConfigurationError("--no-local-worker needs --workers")
    repository = args.repository
    # a repository for the local worker, or for Ray's torch workers (an emulated or a remote
    # worker brings its own models)
    if (args.ray is None and not args.no_local_worker) or (
        args.ray is not None and args.ray_backend == "torch"
    ):
        if repository is None:
            repository = DEMO_REPOSITORY
            ensure_demo_repository(repository, args.device, args.demo_forms, args.threads)
        elif not repository.is_dir():
            raise ConfigurationError(f"--repository {repository}: no such directory")

    if wants_controller_actor(args):  # the controller in an actor that Ray restarts
        from clockwork.cluster_ray.supervised_serve import serve_supervised

        return serve_supervised(args, remote, secret, repository)
    # the local worker: restarted the same way, on the same port, whenever it exits
    worker: ChildSupervisor | None = None
    addresses = list(remote)
    if not args.no_local_worker:
        (port,) = free_ports(1)
        command = [
            sys.executable,
            "-m",
            "clockwork.cli.main",
            "worker",
            "--listen",
            f"127.0.0.1:{port}",
            "--id",
            LOCAL_WORKER_ID,
            "--backend",
            "torch",
            "--repository",
            str(repository),
            "--device",
            args.device,
            "--threads",
            str(args.threads),
            "--profile-missing",
            "--log-format",
            args.log_format,
            "--shared-inputs",
        ]

        def spawn() -> subprocess.Popen[bytes]:
            return spawn_child(command, None, child_env(secret))

        worker = ChildSupervisor(spawn, "the local worker", proc=spawn())
        addresses.insert(0, ("127.0.0.1", port))
    ray_pool = ray_pool_from_args(args, secret, repository)  # None without --ray
    try:
        with asyncio.Runner(loop_factory=loop_factory(not args.no_uvloop)) as runner:
            runner.run(_serve(args, addresses, worker, secret, ray_pool))
    except KeyboardInterrupt:
        pass
    finally:
        if worker is not None:
            worker.stop()
    return 0


def _sharing_memory(
    args: argparse.Namespace, addresses: list[tuple[str, int]], worker: ChildSupervisor | None
) -> list[tuple[str, int]]:
    """The workers that map large inputs' shared segments instead of receiving the bytes: the
    local one (first), and the others if they say they run on this host."""
    if args.workers_share_memory:
        return addresses
    return addresses[:1] if worker is not None else []


async def _serve(
    args: argparse.Namespace,
    addresses: list[tuple[str, int]],
    worker: ChildSupervisor | None,
    secret: bytes | None = None,
    ray_pool: RayWorkerPool | None = None,
) -> None:
    from clockwork.core.units import ms_to_ns
    from clockwork.frontend.availability import repository_model_names
    from clockwork.frontend.decode_pool import DecodePool
    from clockwork.frontend.grpc_server import start_grpc
    from clockwork.frontend.http_server import start_http
    from clockwork.frontend.limits import Door
    from clockwork.frontend.metrics import ServingMetrics
    from clockwork.frontend.server import ControllerModelServer
    from clockwork.service.controller_service import ControllerService
    from clockwork.service.interpreter_lock import bound_lock_waits
    from clockwork.service.malloc_tuning import pin_malloc_thresholds
    from clockwork.service.observers import attach_observer
    from clockwork.service.recent_models import (
        SAVE_INTERVAL_S,
        RecentModels,
        default_state_dir,
        state_file,
    )
    from clockwork.service.startup_heap import freeze_startup_heap
    from clockwork.service.telemetry import ControllerTelemetry, StatusLine

    pin_malloc_thresholds()  # bodies freed after a flood go back to the system
    # before the loop starts its threads and processes: they keep the normal priority
    priority = apply_loop_priority(args)
    # the loop shares the interpreter with the decode pool's feeder and result threads
    bound_lock_waits()
    recent = RecentModels(
        state_file(args.repository or DEMO_REPOSITORY, args.state_dir or default_state_dir())
    )
    controller = ControllerService(
        policy_from_warm_args(args, () if args.no_warm else recent.previous),
        addresses,
        default_slo_ns=ms_to_ns(args.default_slo_ms),
        link_secret=secret,
        connect_backoff_s=RECONNECT_BACKOFF_S,
        # the local worker (first address) is started and restarted by our supervisor
        supervised_workers=addresses[:1] if worker is not None else (),
        share_memory_with=_sharing_memory(args, addresses, worker),
    )
    metrics = ServingMetrics()
    if worker is not None:  # its process_* metrics, labelled process="local_worker"
        metrics.processes.watch("local_worker", lambda: worker.pid)
    attach_observer(controller, metrics)
    attach_observer(controller, recent)
    files = None
    telemetry = None
    if args.log_dir is not None:
        from clockwork.service.log_files import LogFiles

        telemetry = ControllerTelemetry()
        telemetry.attach(controller)
        telemetry.start(time.monotonic_ns())
        files = LogFiles(telemetry, args.log_dir)
    # the repository names its models before the local worker joins: until then they are
    # unavailable (503), not unknown (404)
    expected = (
        repository_model_names(args.repository or DEMO_REPOSITORY) if worker is not None else ()
    )
    server = ControllerModelServer(controller, metrics, expected)
    server.starting = worker is not None  # not ready until the warm start is done
    if worker is not None:  # a repository load of a broken model answers why (400)
        from clockwork.models.problems import RepositoryProblems

        server.availability.broken = RepositoryProblems(
            args.repository or DEMO_REPOSITORY
        ).why_broken
    max_bytes = round(args.max_body_mb * 2**20)
    door = Door(limits_from_args(args))  # one for both protocols: the caps are the server's
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # not in the main thread (the Ray controller actor, stopped through Ray): no handler
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)

    decoder = DecodePool(args.decode_processes)
    await decoder.start()
    await controller.start()
    try:
        http = await start_http(
            server,
            args.host,
            args.http_port,
            max_body_bytes=max_bytes,
            decoder=decoder,
            door=door,
            security=args.security,
        )
    except OSError as e:
        decoder.close()
        await controller.close()
        raise ConfigurationError(f"HTTP on {args.host}:{args.http_port}: {e.strerror or e}") from e
    grpc_server = None
    supervision: asyncio.Task[None] | None = None
    ray_watcher = start_ray_pool(ray_pool, controller)  # Ray's workers join as they start
    try:
        if args.grpc_port:
            try:
                grpc_server = await start_grpc(
                    server,
                    args.host,
                    args.grpc_port,
                    max_message_bytes=max_bytes,
                    decoder=decoder,
                    door=door,
                    security=args.security,
                )
            except (OSError, RuntimeError) as e:
                raise ConfigurationError(f"gRPC on {args.host}:{args.grpc_port}: {e}") from e
        if worker is not None:
            await _wait_local_worker(controller, worker.start(), stop)
            # joined once: from now on an exit is a crash to recover from, not a bad setup
            supervision = asyncio.create_task(worker.run(), name="supervise the local worker")
            await _wait_warm(controller, stop)
            server.starting = False
        else:
            # remote workers only: the banner names their models once one has joined
            with contextlib.suppress(TimeoutError):
                await unless_stopped(controller.wait_workers(1, REMOTE_JOIN_WAIT_S), stop)
            if not controller.workers and not stop.is_set():
                log.warning(
                    "no worker joined within %.0f s; serving as they come", REMOTE_JOIN_WAIT_S
                )
        if not stop.is_set():
            # what startup built lives as long as the server: no collection scans it again
            freeze_startup_heap()
            _banner(args, server, priority.detail)
        status = StatusLine(controller, len(addresses)) if args.status_interval > 0 else None
        # wake for whichever comes first: the status line, or saving the recent-models order
        tick_s = min(args.status_interval or SAVE_INTERVAL_S, SAVE_INTERVAL_S)
        printed_at = saved_at = time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick_s)
            if stop.is_set():
                break
            now = time.monotonic()
            if status is not None and now - printed_at >= args.status_interval - 1e-3:
                status.expected_workers = controller.configured_workers  # Ray adds workers
                log.info("%s", status.line())
                printed_at = now
            if now - saved_at >= SAVE_INTERVAL_S - 1e-3:
                recent.save()
                saved_at = now
    finally:
        log.info("shutting down")
        recent.save()
        if supervision is not None:
            supervision.cancel()
            await asyncio.gather(supervision, return_exceptions=True)
        if grpc_server is not None:
            await grpc_server.stop(1.0)
        await http.cleanup()
        decoder.close()
        await controller.close()
        await stop_ray_pool(ray_pool, ray_watcher)
        if files is not None and telemetry is not None:
            telemetry.finish(time.monotonic_ns())
            files.close()


async def _wait_warm(controller: ControllerService, stop: asyncio.Event) -> None:
    """Let the warm start finish (at most ``WARM_WAIT_S``) before saying the server is ready,
    so that the first request finds its model loaded."""
    warming = getattr(controller.scheduler, "warming", None)
    deadline = time.monotonic() + WARM_WAIT_S
    while warming is not None and warming() and not stop.is_set():
        if time.monotonic() > deadline:
            log.warning("still loading models after %.0f s; serving meanwhile", WARM_WAIT_S)
            return
        await asyncio.sleep(0.05)


async def _wait_local_worker(
    controller: ControllerService, worker: subprocess.Popen[bytes], stop: asyncio.Event
) -> None:
    deadline = time.monotonic() + LOCAL_JOIN_TIMEOUT_S
    while LOCAL_WORKER_ID not in controller.workers and not stop.is_set():
        code = worker.poll()
        if code is not None:
            raise ConfigurationError(
                f"the local worker exited with code {code} before it "
                "joined (its error is printed above)"
            )
        if time.monotonic() > deadline:
            raise ConfigurationError(
                f"the local worker did not join within {LOCAL_JOIN_TIMEOUT_S:.0f} s"
            )
        await asyncio.sleep(0.1)


def _banner(args: argparse.Namespace, server: ControllerModelServer, priority: str) -> None:
    from clockwork.cli.security_args import exposure_lines

    index = server.repository_index(ready_only=True)
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    security = args.security
    scheme = "https" if security.tls else "http"
    # what a curl needs besides the URL: the CA of a self-signed certificate, the token
    curl = "curl" + (f" --cacert {security.tls.cert_path}" if security.tls else "")
    if security.requires_token:
        token = f"$(cat {args.token_file})" if args.token_file else "$CLOCKWORK_TOKEN"
        curl += f' -H "Authorization: Bearer {token}"'
    lines = [
        f"clockwork {server.version} serving {len(index)} model(s)",
        *exposure_lines(args.host, security),
        f"  HTTP  {scheme}://{host}:{args.http_port}/v2   metrics {scheme}://{host}:"
        f"{args.http_port}/metrics",
    ]
    if args.grpc_port:
        lines.append(f"  gRPC  {host}:{args.grpc_port} (inference.GRPCInferenceService)")
    lines.append(f"  timed loop at {priority}")
    if index:
        model = index[0].name
        meta = server.model_metadata(model)
        lines.append("first request:")
        lines.append(f"  {curl} {scheme}://{host}:{args.http_port}/v2/models/{model}")
        if meta.inputs:
            t = meta.inputs[0]
            shape = [1, *(d if d > 0 else 1 for d in t.shape)]
            count = 1
            for d in shape:
                count *= d
            lines.append(
                f'  python3 -c \'import json; print(json.dumps({{"inputs": [{{"name": '
                f'"{t.name}", "datatype": "{t.datatype}", "shape": {shape}, '
                f"\"data\": [0] * {count}}}]}}))' | {curl} -s -X POST -H 'Content-Type: "
                f"application/json' -d @- {scheme}://{host}:{args.http_port}/v2/models/{model}/infer"
                " | head -c 300; echo"
            )
    lines.append("Ctrl-C stops the server")
    if args.log_format == "json":
        # one record, as every other line of a JSON log is
        log.info("%s", "\n".join(lines))
    else:  # as it is: URLs and commands to copy, without a timestamp in front
        print("\n".join(lines), file=sys.stderr, flush=True)
