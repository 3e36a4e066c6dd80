"""The body of a worker actor (``RayWorkerPool`` wraps it with ``ray.remote``): our
``WorkerService`` on a listening socket of its own, in an event loop thread of its own, so that
the timed path never waits on Ray's machinery in the actor's process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clockwork.cluster_ray.config import RayPoolConfig, RayWorkerConfig
from clockwork.cluster_ray.repository_sync import RepositoryManifest, SyncReport, sync_repository
from clockwork.cluster_ray.restart_memo import (
    Memo,
    memo_dir,
    node_store,
    read_memo,
    restart_delay_s,
    write_memo,
)
from clockwork.core.events import ModelInfo

log = logging.getLogger("clockwork.cluster_ray.worker")

#: how long an actor waits for its service to listen before its start fails
LISTEN_TIMEOUT_S = 60.0


class RayWorkerActor:
    """One worker: ``worker_id``'s devices served to a controller on ``config.host`` (default:
    the node's IP), on the port it had before a restart if that is free, else any. ``secret``:
    the cluster secret (None: insecure). ``repository_server``: the handle of the
    ``RepositoryServer`` actor a torch worker copies the repository from."""

    def __init__(
        self,
        worker_id: str,
        config: RayWorkerConfig,
        pool: RayPoolConfig,
        secret: bytes | None,
        repository_server: Any = None,
    ) -> None:
        import ray

        ctx = ray.get_runtime_context()
        self.worker_id = worker_id
        self.node_id: str = ctx.get_node_id()
        self.gpu_ids = [str(g) for g in ray.get_gpu_ids()]
        group = ray.util.get_current_placement_group()
        self.placement_group: str | None = None if group is None else group.id.hex()
        self._service: Any = None
        self._config = config
        self._secret = secret
        self._server = repository_server
        self._dir = memo_dir(ctx.get_job_id())
        memo_path = self._dir / f"{worker_id}.json"
        with warnings.catch_warnings():
            # Ray 2.60 warns from inside this property about an API it uses itself
            warnings.simplefilter("ignore", DeprecationWarning)
            restarted = bool(ctx.was_current_actor_reconstructed)
        memo = read_memo(memo_path) if restarted else Memo()
        delay_s = restart_delay_s(memo, pool.restart_backoff_s, pool.stable_s)
        if delay_s > 0:
            log.warning(
                "worker %s restarted (start %d): waiting %.2f s",
                worker_id,
                memo.starts + 1,
                delay_s,
            )
            time.sleep(delay_s)
        stable = memo.starts > 0 and time.time() - memo.last_start_s >= pool.stable_s
        self.starts = 1 if stable else memo.starts + 1
        self.repository: Path | None = None
        self.last_sync: SyncReport | None = None
        if config.backend == "torch":
            self.repository = self._dir / f"repo-{worker_id}"
            self.sync()
        self.host = config.host or ray.util.get_node_ip_address()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(memo.port, ready), name=f"worker {worker_id}", daemon=True
        )
        self._thread.start()
        self.port = ready.result(timeout=LISTEN_TIMEOUT_S)
        write_memo(memo_path, Memo(self.starts, time.time(), self.port))

    # ----------------------------------------------------------------- called through Ray

    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def describe(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "node_id": self.node_id,
            "gpu_ids": self.gpu_ids,
            "pid": os.getpid(),
            "address": f"{self.host}:{self.port}",
            "starts": self.starts,
            "placement_group": self.placement_group,
            # LoadWeights received from any controller since this start: a restarted
            # controller that re-learned what is resident sends none for it
            "loads": self.loads_received(),
            "repository": None if self.repository is None else str(self.repository),
        }

    def loads_received(self) -> dict[str, int]:
        """The ``LoadWeights`` received for each model, from any controller, since this start."""
        if self._service is None:
            return {}
        # a copy taken in one step: the service's thread may be counting meanwhile
        received = list(self._service.received.items())
        return {model: n for (kind, model), n in received if kind == "LoadWeights"}

    def sync(self) -> SyncReport | None:
        """Copy into this node's cache what the repository server has and we lack."""
        if self._server is None or self.repository is None:
            return None
        import ray

        server = self._server
        manifest: RepositoryManifest = ray.get(server.manifest.remote())

        def fetch(path: str, offset: int, size: int) -> bytes:
            data: bytes = ray.get(server.read.remote(path, offset, size))
            return data

        self.last_sync = sync_repository(manifest, self.repository, node_store(), fetch)
        return self.last_sync

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout=10)

    # ----------------------------------------------------------------- the service's thread

    def _setup(self) -> tuple[Sequence[Any], Sequence[ModelInfo], Any]:
        from clockwork.worker.assembly import TorchRescan, emulated_setup, torch_setup

        cfg = self._config
        if cfg.backend == "emulated":
            devices, models = emulated_setup(self.worker_id, cfg.devices, cfg.models, cfg.profile)
            return devices, models, None
        from clockwork.worker.backends.torch_backend import TorchBackend

        assert self.repository is not None
        device = "cuda:0" if self.gpu_ids else "cpu"  # Ray made our GPU the only one visible
        devices, models = torch_setup(
            self.worker_id, self.repository, device, cfg.threads, profile_missing=True
        )
        backend = devices[0][1]
        assert isinstance(backend, TorchBackend)
        rescan = TorchRescan(backend, models, profile_missing=True, threads=cfg.threads)

        def synced_rescan() -> list[ModelInfo]:
            # a model added at the source while serving reaches this node first
            try:
                self.sync()
            except Exception as e:
                log.warning("worker %s: repository sync failed: %s", self.worker_id, e)
            return rescan()

        return devices, models, synced_rescan

    def _run(self, port: int, ready: concurrent.futures.Future[int]) -> None:
        from clockwork.service.interpreter_lock import bound_lock_waits
        from clockwork.transport import loop_factory

        # the actor's process is the worker's own: its executor waits for the lock as the
        # command's does (``interpreter_lock``)
        bound_lock_waits()
        try:
            with asyncio.Runner(loop_factory=loop_factory(True)) as runner:
                runner.run(_serve(self, port, ready))
        except BaseException as e:
            if not ready.done():
                ready.set_exception(e)
            raise


async def _serve(actor: RayWorkerActor, port: int, ready: concurrent.futures.Future[int]) -> None:
    """The actor's service until ``stop``. Not a method: Ray takes a class with a coroutine
    method for an async actor, whose calls would then run on an event loop of Ray's."""
    from clockwork.service.worker_service import WorkerService

    devices, models, rescan = actor._setup()
    service = WorkerService(
        actor.worker_id,
        devices,
        models,
        rescan=rescan,
        secret=actor._secret,
        controller_silence_s=actor._config.controller_silence_s,
    )
    actor._service = service
    actor._loop = asyncio.get_running_loop()
    actor._stop = asyncio.Event()
    try:
        try:
            await service.start(actor.host, port)
        except OSError:
            if port == 0:
                raise
            log.warning("worker %s: port %d taken; listening on another", actor.worker_id, port)
            await service.start(actor.host, 0)
        ready.set_result(service.port)
        await actor._stop.wait()
    finally:
        await service.close()
