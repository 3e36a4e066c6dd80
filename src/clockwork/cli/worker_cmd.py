"""``clockwork worker``: serve one worker's devices to a controller over TCP.

``--backend emulated``: ``--devices`` emulated devices of the profile's device kind, serving
``--models`` copies of the shipped (or given) profile, named ``<model>-0000`` and on, as the
simulator names them. ``--backend torch``: one device (``--device cpu`` or ``cuda:N``) serving the
models of ``--repository`` that have a profile for the backend's device kind
(``REPO/<model>/profile-<kind>.json``, as ``clockwork profile`` writes it); models without one
are skipped with a warning, since the controller cannot schedule a model it has no estimate for.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

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
from clockwork.core.units import NS_PER_MS
from clockwork.transport import loop_factory
from clockwork.worker.backends.base import Backend

if TYPE_CHECKING:
    from clockwork.models.config import ModelConfig
    from clockwork.models.tensors import TensorSpec

DEFAULT_PROFILE = "resnet50_v2-V100-32GB"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "worker",
        help="serve this machine's devices to a controller",
        description="Run a worker: listen for one controller at a time (a newer controller "
        "connection replaces the older) and run the actions it sends on the devices.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--listen", default="127.0.0.1:7000", metavar="HOST:PORT",
                   help="address to listen on")
    p.add_argument("--id", default=None, help="worker id (default: w-<port>)")
    p.add_argument("--backend", choices=("emulated", "torch"), default="emulated")
    p.add_argument("--devices", type=int, default=1, help="emulated devices")
    p.add_argument("--models", type=int, default=10,
                   help="emulated: copies of the profiled model")
    p.add_argument("--profile", default=DEFAULT_PROFILE,
                   help="emulated: shipped profile name or a profile JSON path")
    p.add_argument("--cache-pages", type=int, default=None,
                   help="emulated: weights cache pages per device (default: the device kind's)")
    p.add_argument("--noise-sigma", type=float, default=0.0,
                   help="emulated: log-normal noise on durations")
    p.add_argument("--repository", type=Path, default=None, metavar="DIR",
                   help="torch: model repository")
    p.add_argument("--device", default="cpu", help="torch: cpu or cuda:N")
    p.add_argument("--threads", type=int, default=1, help="torch: CPU threads")
    p.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=run)


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigurationError(f"address {text!r} is not of the form HOST:PORT")
    return host, int(port)


def emulated_setup(worker_id: str, devices: int, models: int, profile_spec: str,
                   cache_pages: int | None = None, noise_sigma: float = 0.0,
                   seed: int = 0) -> tuple[list[tuple[DeviceId, Backend]], list[ModelInfo]]:
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
        raise ConfigurationError(f"profile device kind {profile.device_kind!r} is not known; "
                                 "give --cache-pages")
    names = [f"{profile.model}-{i:04d}" for i in range(models)]
    profiles = {n: profile for n in names}
    backends: list[tuple[DeviceId, Backend]] = [
        (DeviceId(worker_id, i), EmulatedBackend(kind, profiles, seed=seed + i,
                                                 noise_sigma=noise_sigma))
        for i in range(devices)]
    signature = emulated_signature(profile)
    return backends, [ModelInfo(n, (profile,), signature=signature) for n in names]


def emulated_signature(profile: ModelProfile) -> ModelSignature:
    """What an emulated model takes and returns: one FP32 vector of the profile's input bytes in,
    one of its output bytes out (the emulated backend ignores the values)."""
    return ModelSignature(
        inputs=(TensorSignature("input", "FP32", (max(1, profile.input_bytes // 4),)),),
        outputs=(TensorSignature("output", "FP32", (max(1, profile.output_bytes // 4),)),),
        max_batch_size=max(profile.exec_ns), platform="emulated")


def repository_signature(config: ModelConfig) -> ModelSignature:
    """What a repository model takes and returns, from its ``config.json``."""
    def sigs(specs: Sequence[TensorSpec]) -> tuple[TensorSignature, ...]:
        return tuple(TensorSignature(t.name, t.dtype, tuple(t.shape)) for t in specs)

    return ModelSignature(sigs(config.inputs), sigs(config.outputs), config.max_batch_size,
                          tuple(config.versions), platform="pytorch")


def torch_setup(worker_id: str, repository: Path, device: str,
                threads: int = 1) -> tuple[list[tuple[DeviceId, Backend]], list[ModelInfo]]:
    """One torch device serving the models of ``repository`` that have a profile for it."""
    from clockwork.models.repository import ModelRepository
    from clockwork.worker.backends.torch_backend import TorchBackend

    repo = ModelRepository(repository)
    configs = repo.scan()
    probe = TorchBackend(repo, device, threads=threads, models=list(configs)[:1])
    kind_name = probe.kind.name
    infos: list[ModelInfo] = []
    for name, config in sorted(configs.items()):
        path = repo.root / name / f"profile-{kind_name}.json"
        if not path.is_file():
            logging.warning("model %s has no profile %s; skipped (run `clockwork profile`)",
                            name, path.name)
            continue
        slo = (round(config.default_slo_ms * NS_PER_MS)
               if config.default_slo_ms is not None else None)
        infos.append(ModelInfo(name, (load_profile(path),), slo, repository_signature(config)))
    if not infos:
        raise ConfigurationError(f"no model of {repository} has a profile for {kind_name!r}")
    backend = TorchBackend(repo, device, threads=threads, models=[m.name for m in infos])
    return [(DeviceId(worker_id, 0), backend)], infos


def run(args: argparse.Namespace) -> int:
    from clockwork.service.worker_service import WorkerService

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port = parse_address(args.listen)
    worker_id = args.id or f"w-{port}"
    if args.backend == "emulated":
        devices, models = emulated_setup(worker_id, args.devices, args.models, args.profile,
                                         args.cache_pages, args.noise_sigma)
    else:
        if args.repository is None:
            raise ConfigurationError("--backend torch needs --repository")
        devices, models = torch_setup(worker_id, args.repository, args.device, args.threads)
    service = WorkerService(worker_id, devices, models)
    print(f"worker {worker_id}: {len(devices)} device(s), {len(models)} model(s), "
          f"listening on {host}:{port}", file=sys.stderr, flush=True)

    async def main() -> None:
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
