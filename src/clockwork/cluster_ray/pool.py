"""The controller's side of a Ray cluster: start worker actors where they belong, connect the
controller to each, start more as nodes join, and let go of those whose node is gone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clockwork.cluster_ray import placement_groups
from clockwork.cluster_ray.config import RayPoolConfig, RayWorkerConfig
from clockwork.cluster_ray.placement import Placement, nodes_from_ray, plan_workers
from clockwork.core.errors import ConfigurationError

if TYPE_CHECKING:
    from clockwork.service.controller_service import ControllerService
    from clockwork.service.worker_links import WorkerLink

log = logging.getLogger("clockwork.cluster_ray")

#: how long a worker that is not joined goes before its address is asked again (a restart
#: that could not get its former port listens on another)
REASK_AFTER_S = 2.0
#: what Ray raises for a call to an actor that is dead and will not be restarted
DEAD_ACTOR_ERRORS = frozenset({"ActorDiedError", "RayActorError"})
#: so many such answers in a row (one per ``REASK_AFTER_S``) and a worker is given up: one alone
#: may be a call caught by a death Ray is still restarting the actor from
DEAD_ANSWERS = 3


@dataclass
class RayWorker:
    """One worker actor and, once it reported its address, the controller's link to it."""

    placement: Placement
    actor: Any
    #: the placement group holding its devices (removed when it is let go)
    group: Any = None
    link: WorkerLink | None = None
    address: tuple[str, int] | None = None
    failed: str | None = None
    asking: bool = False
    unjoined_polls: int = 0
    dead_answers: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


def ray_module() -> Any:
    """Ray, or a ``ConfigurationError`` saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise ConfigurationError(
            "--ray needs Ray: pip install 'clockwork[ray]' (make test-ray installs it into .venv)"
        ) from e
    return ray


class RayWorkerPool:
    """Worker actors on a Ray cluster for one controller. ``connect`` (blocking) joins or starts
    Ray; ``run`` (a task) places the workers and keeps placing them as nodes come and go;
    ``close`` stops the actors (and the Ray it started). ``repository``: a torch pool's model
    repository, on this node; the workers copy it through a repository server actor here."""

    def __init__(
        self,
        pool: RayPoolConfig,
        worker: RayWorkerConfig,
        secret: bytes | None,
        repository: Path | None = None,
        *,
        ray_init: dict[str, Any] | None = None,
    ) -> None:
        if worker.backend == "torch" and repository is None:
            raise ConfigurationError("Ray torch workers need a repository")
        self.config = pool
        self.worker_config = worker
        self._secret = secret
        self._repository = repository
        self._ray_init = ray_init or {}
        self._owns_ray = False
        self._repository_server: Any = None
        self._actor_class: Any = None
        self.workers: dict[str, RayWorker] = {}
        self._controller: ControllerService | None = None

    # ----------------------------------------------------------------- set-up

    def connect(self) -> None:
        """Join the Ray cluster (``config.address``; None: ``$RAY_ADDRESS`` or a new local one)
        unless this process already has; start the repository server."""
        ray = ray_module()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
            kwargs.update(self._ray_init)
            try:
                ray.init(address=self.config.address, **kwargs)
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise ConfigurationError(f"--ray {self.config.address or ''}: {e}") from e
            self._owns_ray = True
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from clockwork.cluster_ray.worker_actor import RayWorkerActor

        self._actor_class = ray.remote(RayWorkerActor)
        if self._repository is not None and self.worker_config.backend == "torch":
            from clockwork.cluster_ray.repository_server import RepositoryServer

            here = ray.get_runtime_context().get_node_id()
            self._repository_server = (
                ray.remote(RepositoryServer)
                .options(
                    num_cpus=0,
                    max_restarts=-1,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
                    **self._detached("repository"),
                )
                .remote(str(self._repository.resolve()))
            )

    def _detached(self, what: str) -> dict[str, Any]:
        """The options that name ``what``'s actor and let it outlive this process (none unless
        ``detached_prefix``): a restarted controller gets the living actor back."""
        prefix = self.config.detached_prefix
        if prefix is None:
            return {}
        return {"name": f"{prefix}{what}", "lifetime": "detached", "get_if_exists": True}

    def _start_actor(self, placement: Placement) -> RayWorker:
        prefix = self.config.detached_prefix
        name = None if prefix is None else f"{prefix}{placement.worker_id}"
        group = placement_groups.reserve(placement, name, detached=prefix is not None)
        options: dict[str, Any] = {
            "num_gpus": placement.num_gpus,
            "num_cpus": placement.num_cpus,
            "max_restarts": self.config.max_restarts,
            # a worker's own devices, on its node: it restarts there or not at all
            "scheduling_strategy": placement_groups.scheduling(group),
        }
        actor = self._actor_class.options(**options, **self._detached(placement.worker_id)).remote(
            placement.worker_id,
            self.worker_config,
            self.config,
            self._secret,
            self._repository_server,
        )
        log.info("starting worker actor %s on node %s", placement.worker_id, placement.node_id)
        return RayWorker(placement, actor, group)

    # ----------------------------------------------------------------- the watcher

    async def run(self, controller: ControllerService) -> None:
        """Place workers now and after every ``poll_interval_s``, until cancelled."""
        self._controller = controller
        while True:
            try:
                await self.poll()
            except Exception:
                log.exception("Ray worker pool: polling the cluster failed; trying again")
            await asyncio.sleep(self.config.poll_interval_s)

    async def poll(self) -> None:
        """One look at Ray's node list: start the workers of new nodes, drop those of nodes
        gone, and ask the address of workers not joined for a while again."""
        ray = ray_module()
        records = await asyncio.to_thread(ray.nodes)
        nodes = nodes_from_ray(records)
        alive = {n.node_id for n in nodes if n.alive}
        for placement in plan_workers(
            nodes, self.config.workers_per_node, self.config.node_resource
        ):
            if placement.worker_id not in self.workers:
                w = self._start_actor(placement)
                self.workers[placement.worker_id] = w
                self._spawn(w, self._join(w))
        for wid, w in list(self.workers.items()):
            if w.placement.node_id not in alive:
                log.warning("worker %s: node %s is gone", wid, w.placement.node_id)
                del self.workers[wid]
                await self._drop(w)
                continue
            joined = self._controller is not None and wid in self._controller.workers
            w.unjoined_polls = 0 if joined or w.link is None else w.unjoined_polls + 1
            if (
                w.unjoined_polls * self.config.poll_interval_s >= REASK_AFTER_S
                and not w.asking
                and w.failed is None
            ):
                self._spawn(w, self._reask(w))

    async def wait_addresses(self, count: int, timeout_s: float) -> list[tuple[str, int]]:
        """Without a controller (``run`` not started): place the workers and wait until
        ``count`` of them listen; their addresses, for a controller started elsewhere (the
        benches connect their own)."""
        async with asyncio.timeout(timeout_s):
            while True:
                await self.poll()
                ready = [w.address for w in self.workers.values() if w.address is not None]
                if len(ready) >= count:
                    return sorted(ready)
                await asyncio.sleep(self.config.poll_interval_s)

    def _spawn(self, w: RayWorker, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        w.tasks.add(task)
        task.add_done_callback(w.tasks.discard)

    async def _ask_address(self, w: RayWorker, timeout_s: float) -> tuple[str, int]:
        ref = w.actor.address.remote()
        host, port = await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout_s)
        return str(host), int(port)

    async def _join(self, w: RayWorker) -> None:
        try:
            w.address = await self._ask_address(w, self.config.start_timeout_s)
        except Exception as e:  # the actor's start failed (its cause is in the error)
            w.failed = f"{type(e).__name__}: {e}"
            log.error("worker %s did not start: %s", w.placement.worker_id, w.failed)
            return
        log.info("worker %s listens on %s:%d", w.placement.worker_id, *w.address)
        if self._controller is not None and not self._controller.closing:
            w.link = self._controller.add_worker(*w.address)

    async def _reask(self, w: RayWorker) -> None:
        """A worker not joined for a while: if it (restarted) listens elsewhere now, point its
        link there (the link reads its address at each connection attempt)."""
        w.asking = True
        try:
            address = await self._ask_address(w, self.config.start_timeout_s)
        except Exception as e:
            w.dead_answers = w.dead_answers + 1 if type(e).__name__ in DEAD_ACTOR_ERRORS else 0
            if w.dead_answers >= DEAD_ANSWERS:
                # out of restarts: stop connecting to it (the error says why it died)
                w.failed = f"{type(e).__name__}: {e}"
                log.error("worker %s died for good: %s", w.placement.worker_id, w.failed)
                if w.link is not None and self._controller is not None:
                    with contextlib.suppress(ValueError):
                        await self._controller.remove_worker(w.link)
                    w.link = None
                placement_groups.release(w.group)
            else:
                log.debug("worker %s: no address yet: %s", w.placement.worker_id, e)
            return
        finally:
            w.asking = False
        w.dead_answers = 0
        if w.link is not None and address != (w.link.host, w.link.port):
            log.info("worker %s moved to %s:%d", w.placement.worker_id, *address)
            w.link.host, w.link.port = address
        w.address = address

    async def _drop(self, w: RayWorker) -> None:
        for t in list(w.tasks):
            t.cancel()
        await asyncio.gather(*w.tasks, return_exceptions=True)
        if w.link is not None and self._controller is not None:
            with contextlib.suppress(ValueError):
                await self._controller.remove_worker(w.link)
        with contextlib.suppress(Exception):
            ray_module().kill(w.actor, no_restart=True)
        placement_groups.release(w.group)

    async def close(self) -> None:
        """Stop every worker actor (no restarts), and Ray if we started it."""
        ray = ray_module()
        workers, self.workers = list(self.workers.values()), {}
        for w in workers:
            for t in list(w.tasks):
                t.cancel()
            await asyncio.gather(*w.tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                ray.kill(w.actor, no_restart=True)
            placement_groups.release(w.group)
        if self._repository_server is not None:
            with contextlib.suppress(Exception):
                ray.kill(self._repository_server, no_restart=True)
        if self._owns_ray:
            await asyncio.to_thread(ray.shutdown)
