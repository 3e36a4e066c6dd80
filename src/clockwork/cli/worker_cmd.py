"""``clockwork worker``: serve one worker's devices to a controller over TCP.

``--backend emulated``: ``--devices`` emulated devices of the profile's device kind, serving
``--models`` copies of the shipped (or given) profile, named ``<model>-0000`` and on, as the
simulator names them. ``--backend torch``: one device (``--device cpu`` or ``cuda:N``) serving the
models of ``--repository`` that have a profile for the backend's device kind
(``REPO/<model>/profile-<kind>.json``, as ``clockwork profile`` writes it); models without one
are skipped with a warning, since the controller cannot schedule a model it has no estimate for.
A torch worker also serves models added to the repository while it runs, once the controller asks
it to rescan (``TorchRescan``; ``--profile-missing`` applies to them as at start).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from clockwork.cli.addresses import parse_address
from clockwork.cli.help_format import HelpFormatter
from clockwork.cli.log_setup import add_log_arguments, setup_logging
from clockwork.core.errors import ConfigurationError
from clockwork.transport import loop_factory
from clockwork.transport.cluster_secret import add_secret_arguments, require_secret
from clockwork.transport.handshake import ID_BYTES
from clockwork.worker.assembly import TorchRescan, emulated_setup, torch_setup

if TYPE_CHECKING:
    pass

log = logging.getLogger("clockwork.cli.worker")

DEFAULT_PROFILE = "resnet50_v2-V100-32GB"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "worker",
        help="serve this machine's devices to a controller",
        description="Run a worker: listen for one controller at a time and run the actions it "
        "sends on the devices. Every controller must prove the cluster secret (from "
        "$CLOCKWORK_CLUSTER_SECRET or --cluster-secret-file); while one is connected and live, "
        "another is refused unless it asks to take over (clockwork controller --take-over).",
        formatter_class=HelpFormatter,
        # no abbreviations: "--token SECRET" must not be read as --token-file and echoed back
        allow_abbrev=False,
    )
    p.add_argument(
        "--listen", default="127.0.0.1:7000", metavar="HOST:PORT", help="address to listen on"
    )
    p.add_argument("--id", default=None, help="worker id (default: w-<port>)")
    p.add_argument(
        "--shared-inputs",
        action="store_true",
        help="map inputs the controller sends as shared-memory segments (a worker on the "
        "controller's host: serve's local worker)",
    )
    p.add_argument(
        "--backend",
        choices=("emulated", "torch"),
        default="emulated",
        help="emulated (a profile's timings, no computation) or torch (real models)",
    )
    p.add_argument("--devices", type=int, default=1, help="emulated devices")
    p.add_argument("--models", type=int, default=10, help="emulated: copies of the profiled model")
    p.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        help="emulated: shipped profile name or a profile JSON path",
    )
    p.add_argument(
        "--cache-pages",
        type=int,
        default=None,
        help="emulated: weights cache pages per device (default: the device kind's)",
    )
    p.add_argument(
        "--noise-sigma", type=float, default=0.0, help="emulated: log-normal noise on durations"
    )
    p.add_argument(
        "--repository", type=Path, default=None, metavar="DIR", help="torch: model repository"
    )
    p.add_argument(
        "--device", default="cpu", help="torch: cpu, cuda:N, or auto (CUDA if present, else CPU)"
    )
    p.add_argument(
        "--profile-missing",
        action="store_true",
        help="torch: profile models that have no profile for the device first",
    )
    p.add_argument("--threads", type=int, default=1, help="torch: CPU threads")
    add_secret_arguments(p)
    p.add_argument(
        "--controller-silence-s",
        type=float,
        default=None,
        metavar="S",
        help="a controller not heard from for S seconds no longer holds this worker (default: 3)",
    )
    p.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    add_log_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from clockwork.service.malloc_tuning import pin_malloc_thresholds
    from clockwork.service.worker_service import WorkerService

    pin_malloc_thresholds()  # inputs freed after a burst go back to the system

    setup_logging(args.log_format, args.verbose)
    host, port = parse_address(args.listen)
    secret = require_secret(args.cluster_secret_file, args.insecure_no_auth, "worker")
    from clockwork.service.worker_service import CONTROLLER_SILENCE_S

    silence_s = args.controller_silence_s
    if silence_s is None:
        silence_s = CONTROLLER_SILENCE_S
    if silence_s <= 0:
        raise ConfigurationError("--controller-silence-s must be > 0")
    worker_id = args.id or f"w-{port}"
    if len(worker_id.encode()) > ID_BYTES:
        raise ConfigurationError(f"--id {worker_id!r} is over {ID_BYTES} bytes")
    rescan: TorchRescan | None = None
    if args.backend == "emulated":
        devices, models = emulated_setup(
            worker_id, args.devices, args.models, args.profile, args.cache_pages, args.noise_sigma
        )
    else:
        if args.repository is None:
            raise ConfigurationError("--backend torch needs --repository")
        from clockwork.worker.backends.torch_backend import TorchBackend

        devices, models = torch_setup(
            worker_id, args.repository, args.device, args.threads, args.profile_missing
        )
        backend = devices[0][1]
        assert isinstance(backend, TorchBackend)
        rescan = TorchRescan(
            backend, models, profile_missing=args.profile_missing, threads=args.threads
        )
    service = WorkerService(
        worker_id,
        devices,
        models,
        rescan=rescan,
        secret=secret,
        controller_silence_s=silence_s,
        shared_inputs=args.shared_inputs,
    )
    log.info(
        "worker %s: %d device(s), %d model(s), listening on %s:%d",
        worker_id,
        len(devices),
        len(models),
        host,
        port,
    )

    async def main() -> None:
        # explicit handlers: a worker started with SIGINT ignored (from a background shell job,
        # or by a parent that was) must still stop cleanly on SIGINT, and SIGTERM is graceful too
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, service.request_close)
        from clockwork.service.startup_heap import freeze_startup_heap

        # the runtime and its models are built: no collection need scan them again
        freeze_startup_heap()
        try:
            await service.serve(host, port)
        finally:
            await service.close()

    from clockwork.service.interpreter_lock import bound_lock_waits

    # an execution that ends waits for the lock while the event loop's thread runs Python
    bound_lock_waits()
    try:
        with asyncio.Runner(loop_factory=loop_factory(not args.no_uvloop)) as runner:
            runner.run(main())
    except KeyboardInterrupt:
        pass
    return 0
