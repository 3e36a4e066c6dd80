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
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from clockwork.cli.addresses import parse_address
from clockwork.cli.help_format import HelpFormatter
from clockwork.cli.log_setup import add_log_arguments, setup_logging
from clockwork.core.errors import ConfigurationError
from clockwork.core.events import ModelInfo
from clockwork.core.ids import DeviceId
from clockwork.core.profile import (
    DEVICE_KINDS,
    DeviceKind,
    ModelProfile,
    load_profile,
    shipped_profile,
)
from clockwork.core.signature import ModelSignature, TensorSignature
from clockwork.core.units import ms_to_ns
from clockwork.transport import loop_factory
from clockwork.transport.cluster_secret import add_secret_arguments, require_secret
from clockwork.transport.handshake import ID_BYTES
from clockwork.worker.backends.base import Backend

if TYPE_CHECKING:
    from clockwork.models.config import ModelConfig
    from clockwork.models.repository import ModelRepository
    from clockwork.models.tensors import TensorSpec
    from clockwork.worker.backends.torch_backend import TorchBackend

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


def emulated_setup(
    worker_id: str,
    devices: int,
    models: int,
    profile_spec: str,
    cache_pages: int | None = None,
    noise_sigma: float = 0.0,
    seed: int = 0,
) -> tuple[list[tuple[DeviceId, Backend]], list[ModelInfo]]:
    """Devices and models of an emulated worker (also used by tests)."""
    from clockwork.worker.backends.emulated import EmulatedBackend

    if devices < 1 or models < 1:
        raise ConfigurationError("--devices and --models must be >= 1")
    path = Path(profile_spec)
    profile = load_profile(path) if path.suffix == ".json" else shipped_profile(profile_spec)
    kind = DEVICE_KINDS.get(profile.device_kind)
    if cache_pages is not None:
        kind = DeviceKind(profile.device_kind, profile.page_size_bytes, cache_pages)
    if kind is None:
        raise ConfigurationError(
            f"profile device kind {profile.device_kind!r} is not known; give --cache-pages"
        )
    names = [f"{profile.model}-{i:04d}" for i in range(models)]
    profiles = {n: profile for n in names}
    backends: list[tuple[DeviceId, Backend]] = [
        (
            DeviceId(worker_id, i),
            EmulatedBackend(kind, profiles, seed=seed + i, noise_sigma=noise_sigma),
        )
        for i in range(devices)
    ]
    signature = emulated_signature(profile)
    return backends, [ModelInfo(n, (profile,), signature=signature) for n in names]


def emulated_signature(profile: ModelProfile) -> ModelSignature:
    """What an emulated model takes and returns: one FP32 vector of the profile's input bytes in,
    one of its output bytes out (the emulated backend ignores the values)."""
    return ModelSignature(
        inputs=(TensorSignature("input", "FP32", (max(1, profile.input_bytes // 4),)),),
        outputs=(TensorSignature("output", "FP32", (max(1, profile.output_bytes // 4),)),),
        max_batch_size=max(profile.exec_ns),
        platform="emulated",
    )


def repository_signature(config: ModelConfig) -> ModelSignature:
    """What a repository model takes and returns, from its ``config.json``."""

    def sigs(specs: Sequence[TensorSpec]) -> tuple[TensorSignature, ...]:
        return tuple(TensorSignature(t.name, t.dtype, tuple(t.shape)) for t in specs)

    return ModelSignature(
        sigs(config.inputs),
        sigs(config.outputs),
        config.max_batch_size,
        tuple(config.versions),
        platform=config.platform_name,
    )


def repository_model_info(
    repo: ModelRepository, name: str, config: ModelConfig, kind_name: str
) -> ModelInfo | None:
    """What the controller learns of repository model ``name`` served on a ``kind_name`` device:
    its profile there (``profile_path``), default SLO and signature; None if it has no profile."""
    from clockwork.models.profiler import profile_path

    path = profile_path(repo, name, kind_name)
    if not path.is_file():
        return None
    slo = ms_to_ns(config.default_slo_ms) if config.default_slo_ms is not None else None
    return ModelInfo(name, (load_profile(path),), slo, repository_signature(config))


def torch_setup(
    worker_id: str,
    repository: Path,
    device: str,
    threads: int = 1,
    profile_missing: bool = False,
) -> tuple[list[tuple[DeviceId, Backend]], list[ModelInfo]]:
    """One torch device serving the models of ``repository`` that have a profile for it
    (``profile_missing``: measure the others first, as ``clockwork profile`` would).
    ``device`` ``auto`` is the first CUDA device if there is one, else the CPU."""
    from clockwork.models.profiler import profile_path
    from clockwork.models.repository import ModelRepository
    from clockwork.worker.backends.torch_backend import TorchBackend, default_kind

    if device == "auto":
        import torch

        device = "cuda:0" if torch.cuda.is_available() else "cpu"
    repo = ModelRepository(repository)
    configs = repo.scan()
    from clockwork.models.problems import log_scan_errors

    log_scan_errors(repo, log)  # a broken model is skipped, saying why
    if not configs:
        raise ConfigurationError(f"{repository}: no models in this repository")
    # the name a backend on ``device`` will have; no backend made for it: on CUDA each one holds
    # a weights cache of half the device's memory
    kind_name = default_kind(device).name
    missing = [n for n in sorted(configs) if not profile_path(repo, n, kind_name).is_file()]
    if missing and profile_missing:
        from clockwork.models.profiler import profile_repository

        log.info(
            "profiling %d model(s) on %s (once; the profiles are saved in the repository)",
            len(missing),
            device,
        )
        profile_repository(repo, device, models=missing, threads=threads)
    infos: list[ModelInfo] = []
    for name, config in sorted(configs.items()):
        info = repository_model_info(repo, name, config, kind_name)
        if info is None:
            logging.warning(
                "model %s has no profile %s; skipped (run `clockwork profile`)",
                name,
                profile_path(repo, name, kind_name).name,
            )
            continue
        infos.append(info)
    if not infos:
        raise ConfigurationError(f"no model of {repository} has a profile for {kind_name!r}")
    backend = TorchBackend(repo, device, threads=threads, models=[m.name for m in infos])
    infos = [m for m in infos if m.name in backend.models()]  # a file it could not open: logged
    return [(DeviceId(worker_id, 0), backend)], infos


class TorchRescan:
    """The ``rescan`` of a torch worker (``WorkerService(rescan=...)``): serve the models added
    to ``backend``'s repository since the worker started.

    Each call scans the repository and takes the models ``backend`` does not serve yet; those
    without a profile for its device kind are profiled first if ``profile_missing`` (as
    ``torch_setup`` does at start; the profile is written beside the model), else skipped with
    a warning. Each is then registered into ``backend`` (host memory). A model that fails any
    step is logged and skipped; the next call tries it again.

    Returns the ``ModelInfo`` of every model registered so far, ``models`` (those served from
    the start) included: the worker keeps the ones it does not list yet, so a model whose info
    was registered but never advertised (a rescan cut short) is not lost.

    Profiling runs beside the served models on the same device, so its figures are as noisy as
    the load is, and it slows what is served meanwhile. On CUDA its cache holds only the pages
    of the model being measured (the serving backend already holds half of the memory).
    """

    def __init__(
        self,
        backend: TorchBackend,
        models: Sequence[ModelInfo],
        *,
        profile_missing: bool = False,
        threads: int = 1,
        profile_runs: int | None = None,
        profile_warmup: int | None = None,
        profile_loads: int | None = None,
    ) -> None:
        self.backend = backend
        self.repository = backend.repository
        self.profile_missing = profile_missing
        self.threads = threads
        # None: the profiler's defaults (tests pass small numbers)
        self.profile_runs = profile_runs
        self.profile_warmup = profile_warmup
        self.profile_loads = profile_loads
        self._infos: dict[str, ModelInfo] = {m.name: m for m in models}

    def __call__(self) -> list[ModelInfo]:
        repo = self.repository
        served = self.backend.models()
        configs = repo.scan()
        for error in repo.scan_errors():
            if error.model not in served:
                log.warning(
                    "repository model %s is not valid; skipped: %s",
                    error.model or error.path,
                    error,
                )
        new = {n: c for n, c in sorted(configs.items()) if n not in served}
        if new:
            kind_name = self.backend.kind.name
            infos: dict[str, ModelInfo | None] = {}
            for name, config in new.items():
                try:
                    infos[name] = repository_model_info(repo, name, config, kind_name)
                except Exception as e:  # a bad profile file: skip the model, keep serving
                    log.warning("model %s: cannot read its profile; skipped: %s", name, e)
            missing = [n for n, info in infos.items() if info is None]
            if missing and self.profile_missing:
                for name in self._profile(missing):
                    try:
                        infos[name] = repository_model_info(repo, name, new[name], kind_name)
                    except Exception as e:
                        log.warning("model %s: cannot read its profile; skipped: %s", name, e)
            for name, info in infos.items():
                if info is None:
                    log.warning(
                        "new model %s has no profile for %s; skipped (run `clockwork "
                        "profile`, or serve with --profile-missing)",
                        name,
                        kind_name,
                    )
                    continue
                if self.backend.add_models([name]):
                    self._infos[name] = info
                    log.info("new model %s registered", name)
        return list(self._infos.values())

    def _profile(self, names: Sequence[str]) -> list[str]:
        """Profile ``names`` and write their profiles; return those that succeeded. Models of
        one architecture, parameters and batch sizes are measured once, as at start."""
        import dataclasses

        from clockwork.core.profile import save_profile
        from clockwork.models.model_files import weights_sizes
        from clockwork.models.packing import pack_into_pages
        from clockwork.models.profiler import (
            DEFAULT_LOADS,
            DEFAULT_RUNS,
            DEFAULT_WARMUP,
            profile_model,
            profile_path,
        )

        repo = self.repository
        kind = self.backend.kind
        runs = DEFAULT_RUNS if self.profile_runs is None else self.profile_runs
        warmup = DEFAULT_WARMUP if self.profile_warmup is None else self.profile_warmup
        loads = DEFAULT_LOADS if self.profile_loads is None else self.profile_loads
        measured: dict[tuple[object, ...], ModelProfile] = {}
        done: list[str] = []
        for name in names:
            try:
                config = repo.load_config(name)
                key = config.measure_key
                profile = measured.get(key)
                if profile is None:
                    log.info("profiling new model %s on %s", name, self.backend.device)
                    pages = pack_into_pages(
                        weights_sizes(repo, name), kind.page_size_bytes
                    ).num_pages
                    # the served backend's kind name and page size, but a cache of only this
                    # model's pages: a second full-size cache may not fit beside the first
                    small = DeviceKind(kind.name, kind.page_size_bytes, max(1, pages))
                    profile = profile_model(
                        repo,
                        name,
                        str(self.backend.device),
                        kind=small,
                        threads=self.threads,
                        runs=runs,
                        warmup=warmup,
                        loads=loads,
                    )
                    measured[key] = profile
                else:
                    profile = dataclasses.replace(
                        profile,
                        model=name,
                        measured=dataclasses.replace(
                            profile.measured,
                            how=f"{profile.measured.how}; measured on "
                            f"{profile.model}, same architecture, parameters and batch sizes",
                        ),
                    )
                path = profile_path(repo, name, profile.device_kind)
                save_profile(profile, path)
            except Exception as e:  # one model failing to profile must not stop the worker
                log.warning("model %s: profiling failed; skipped: %s", name, e)
                continue
            done.append(name)
        return done


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
        try:
            await service.serve(host, port)
        finally:
            await service.close()

    try:
        with asyncio.Runner(loop_factory=loop_factory(not args.no_uvloop)) as runner:
            runner.run(main())
    except KeyboardInterrupt:
        pass
    return 0
