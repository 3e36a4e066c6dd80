"""``clockwork serve --ray --ray-controller``: the command's process only starts the controller
actor (``RayControllerActor``, on this node: the front door's ports and files are here), with
``max_restarts`` unbounded so that Ray restarts it whenever it dies, and waits for SIGINT or
SIGTERM; then it stops the actor in order and removes whatever it left on the cluster."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import threading
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

from clockwork.cluster_ray.placement_groups import release
from clockwork.cluster_ray.pool import ray_module
from clockwork.core.errors import ConfigurationError

log = logging.getLogger("clockwork.cluster_ray.supervised")

#: how often the command looks whether the controller actor is up (for its log lines)
WATCH_INTERVAL_S = 1.0
CONTROLLER_NAME = "controller"


def detached_prefix() -> str:
    """The names of one serve's actors and placement groups begin with this (unique per serve:
    two serves on one cluster never take each other's workers)."""
    return f"clockwork-{uuid.uuid4().hex[:8]}-"


def start_controller_actor(
    args: argparse.Namespace,
    addresses: list[tuple[str, int]],
    secret: bytes | None,
    repository: Path | None,
) -> Any:
    """Start the controller actor for ``args`` on this node (Ray connected); its handle.
    ``args.ray_detached_prefix`` is set (if not yet) to name what it starts."""
    ray = ray_module()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from clockwork.cluster_ray.controller_actor import RayControllerActor

    if getattr(args, "ray_detached_prefix", None) is None:
        args.ray_detached_prefix = detached_prefix()
    here = ray.get_runtime_context().get_node_id()
    return (
        ray.remote(RayControllerActor)
        .options(
            name=f"{args.ray_detached_prefix}{CONTROLLER_NAME}",
            num_cpus=0,
            max_restarts=-1,
            # its ports and files are on this node: it restarts here
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
        )
        .remote(args, addresses, secret, None if repository is None else str(repository.resolve()))
    )


def stop_controller_actor(actor: Any, prefix: str, timeout_s: float = 90.0) -> None:
    """Stop ``actor`` in order (it closes its pool: workers and their groups), kill it, then
    kill every actor and remove every placement group named with ``prefix`` still there (a
    controller that was killed leaves its detached workers behind)."""
    ray = ray_module()
    from ray.util.placement_group import get_placement_group, placement_group_table

    with contextlib.suppress(Exception):
        ray.get(actor.stop.remote(), timeout=timeout_s)
    with contextlib.suppress(Exception):
        ray.kill(actor, no_restart=True)
    for name in ray.util.list_named_actors():
        if isinstance(name, str) and name.startswith(prefix):
            with contextlib.suppress(Exception):
                ray.kill(ray.get_actor(name), no_restart=True)
    for entry in placement_group_table().values():
        name = entry.get("name") or ""
        if name.startswith(prefix) and entry.get("state") != "REMOVED":
            with contextlib.suppress(ValueError):
                release(get_placement_group(name))


def serve_supervised(
    args: argparse.Namespace,
    addresses: list[tuple[str, int]],
    secret: bytes | None,
    repository: Path | None,
) -> int:
    """The command: join Ray (``args.ray``), start the controller actor, wait for a signal,
    stop it; 0 when stopped by a signal."""
    ray = ray_module()
    owns_ray = not ray.is_initialized()
    if owns_ray:
        try:
            ray.init(address=args.ray or None, include_dashboard=False, log_to_driver=True)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise ConfigurationError(f"--ray {args.ray or ''}: {e}") from e
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    actor = start_controller_actor(args, addresses, secret, repository)
    log.info("the controller runs in Ray actor %s%s", args.ray_detached_prefix, CONTROLLER_NAME)
    try:
        up: bool | None = None
        while not stop.wait(WATCH_INTERVAL_S):
            try:
                ray.get(actor.describe.remote(), timeout=WATCH_INTERVAL_S * 5)
                now_up = True
            except Exception:
                now_up = False
            if now_up != up and up is not None:
                if now_up:
                    log.info("the controller actor is back")
                else:
                    log.warning("the controller actor does not answer: Ray restarts it")
            up = now_up
    finally:
        log.info("stopping the controller actor")
        stop_controller_actor(actor, args.ray_detached_prefix)
        for s, handler in previous.items():
            signal.signal(s, handler)
        if owns_ray:
            ray.shutdown()
    return 0
