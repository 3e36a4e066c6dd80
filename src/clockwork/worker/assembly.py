"""How a worker process is put together: the backend, its devices and the models it serves,
for the emulated backend (a shipped or given profile) and the torch backend (a repository), and
the torch worker's rescan of its repository. ``clockwork worker``, ``clockwork serve``'s local
worker, the Ray worker actors and the tests assemble workers with these."""

from __future__ import annotations

import logging
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
from clockwork.core.units import ms_to_ns
from clockwork.worker.backends.base import Backend

if TYPE_CHECKING:
    from clockwork.models.config import ModelConfig
    from clockwork.models.repository import ModelRepository
    from clockwork.models.tensors import TensorSpec
    from clockwork.worker.backends.torch_backend import TorchBackend

log = logging.getLogger("clockwork.worker")


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

    ranges = config.input_ranges

    def sigs(specs: Sequence[TensorSpec]) -> tuple[TensorSignature, ...]:
        return tuple(
            TensorSignature(t.name, t.dtype, tuple(t.shape), ranges.get(t.name)) for t in specs
        )

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
    from clockwork.models.profile_files import profile_path

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
    from clockwork.models.profile_files import profile_path
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
        from clockwork.worker.profiler import profile_repository

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

        from clockwork.core.profile import save_profile
        from clockwork.models.model_files import weights_sizes
        from clockwork.models.packing import pack_into_pages
        from clockwork.models.profile_files import profile_path
        from clockwork.worker.profiler import (
            DEFAULT_LOADS,
            DEFAULT_RUNS,
            DEFAULT_WARMUP,
            profile_model,
            profile_of_copy,
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
                key = repo.measure_key(config)
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
                    profile = profile_of_copy(profile, name)
                path = profile_path(repo, name, profile.device_kind)
                save_profile(profile, path)
            except Exception as e:  # one model failing to profile must not stop the worker
                log.warning("model %s: profiling failed; skipped: %s", name, e)
                continue
            done.append(name)
        return done
