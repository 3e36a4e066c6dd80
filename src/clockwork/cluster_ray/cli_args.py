"""The ``--ray`` options of ``clockwork serve`` and ``clockwork controller``, and the pool they
describe. Ray itself is imported only when ``--ray`` is given."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from clockwork.cluster_ray.config import BACKENDS, RayPoolConfig, RayWorkerConfig
from clockwork.core.errors import ConfigurationError

if TYPE_CHECKING:
    from clockwork.cluster_ray.pool import RayWorkerPool
    from clockwork.service.controller_service import ControllerService


def add_ray_arguments(
    p: argparse.ArgumentParser, backend: str, controller_actor: bool = False
) -> None:
    """``--ray [ADDRESS]`` and its ``--ray-*`` options on ``p``; ``backend``: what the workers
    run unless ``--ray-backend`` says otherwise; ``controller_actor``: ``--ray-controller`` too
    (``clockwork serve``: the controller and front door in an actor Ray restarts)."""
    g = p.add_argument_group("Ray (needs the clockwork[ray] extra)")
    g.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="start the workers as actors on a Ray cluster: one per GPU of every node, "
        "restarted by Ray, more as nodes join; ADDRESS as ray.init takes it (alone: "
        "$RAY_ADDRESS, else a new local Ray)",
    )
    g.add_argument(
        "--ray-backend",
        choices=BACKENDS,
        default=backend,
        help="what the Ray workers run: emulated devices or torch models of the repository "
        "(copied to each node, checked by sha256)",
    )
    g.add_argument(
        "--ray-workers-per-node",
        type=int,
        default=1,
        metavar="N",
        help="workers on each node without GPUs (0: only GPUs serve)",
    )
    g.add_argument(
        "--ray-node-resource",
        default=None,
        metavar="NAME",
        help="place workers only on nodes that have this Ray resource (e.g. a custom label)",
    )
    g.add_argument(
        "--ray-max-restarts",
        type=int,
        default=-1,
        metavar="N",
        help="how often Ray restarts one worker (-1: always), after a doubling backoff",
    )
    g.add_argument(
        "--ray-models",
        type=int,
        default=10,
        metavar="N",
        help="emulated Ray workers: copies of the shipped profile each serves",
    )
    g.add_argument(
        "--ray-worker-host",
        default=None,
        metavar="HOST",
        help="address the Ray workers listen on and report (default: each node's IP)",
    )
    if controller_actor:
        g.add_argument(
            "--ray-controller",
            action="store_true",
            help="run the controller and front door in a Ray actor on this node too, which "
            "Ray restarts when it dies (the workers stay up and keep their models); this "
            "process only starts it and stops it on SIGINT/SIGTERM",
        )


def wants_controller_actor(args: argparse.Namespace) -> bool:
    """Whether ``--ray-controller`` was given (with ``--ray``: alone, it is an error)."""
    if not getattr(args, "ray_controller", False):
        return False
    if args.ray is None:
        raise ConfigurationError("--ray-controller needs --ray (the cluster to run it on)")
    return True


def ray_pool_from_args(
    args: argparse.Namespace, secret: bytes | None, repository: Path | None
) -> RayWorkerPool | None:
    """The pool ``--ray`` asks for, connected to Ray (None without ``--ray``)."""
    if args.ray is None:
        return None
    from clockwork.cluster_ray.pool import RayWorkerPool

    pool = RayWorkerPool(
        RayPoolConfig(
            address=args.ray or None,
            workers_per_node=args.ray_workers_per_node,
            node_resource=args.ray_node_resource,
            max_restarts=args.ray_max_restarts,
            # set under --ray-controller: the workers outlive a controller actor's death
            detached_prefix=getattr(args, "ray_detached_prefix", None),
        ),
        RayWorkerConfig(
            backend=args.ray_backend,
            models=args.ray_models,
            threads=getattr(args, "threads", 1),
            host=args.ray_worker_host,
        ),
        secret,
        repository if args.ray_backend == "torch" else None,
    )
    pool.connect()
    return pool


def start_ray_pool(
    pool: RayWorkerPool | None, controller: ControllerService
) -> asyncio.Task[None] | None:
    """Start ``pool``'s watcher for ``controller`` (nothing without a pool)."""
    if pool is None:
        return None
    return asyncio.create_task(pool.run(controller), name="Ray worker pool")


async def stop_ray_pool(pool: RayWorkerPool | None, task: asyncio.Task[None] | None) -> None:
    """Stop the watcher ``start_ray_pool`` started, and ``pool``'s workers."""
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    if pool is not None:
        await pool.close()
