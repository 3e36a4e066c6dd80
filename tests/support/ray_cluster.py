"""A multi-node Ray cluster on this machine (Ray's own ``ray.cluster_utils.Cluster``), small
enough for CI's 2 cores, and a controller served by a ``RayWorkerPool`` on it. Ray is imported
only when used: the default test run does not have it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from clockwork.cluster_ray.config import RayPoolConfig, RayWorkerConfig
from clockwork.cluster_ray.pool import RayWorkerPool
from clockwork.core.policies import make_policy
from clockwork.service import ControllerService

MB = 2**20
#: Ray's object store per simulated node: the tests move kilobytes
OBJECT_STORE_BYTES = 80 * MB
SECRET = b"ray-test-cluster-secret-0123456789"


@contextlib.contextmanager
def ray_cluster(nodes: Sequence[dict[str, Any]]) -> Iterator[Any]:
    """A head node (one CPU, no GPU: the controller's) and ``nodes`` (``Cluster.add_node``'s
    arguments, e.g. ``{"num_cpus": 1, "num_gpus": 2}``), with this process connected."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "num_gpus": 0,
            "include_dashboard": False,
            "object_store_memory": OBJECT_STORE_BYTES,
        },
    )
    try:
        for node in nodes:
            cluster.add_node(object_store_memory=OBJECT_STORE_BYTES, **node)
        ray.init(address=cluster.address, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@contextlib.asynccontextmanager
async def ray_served(
    pool: RayPoolConfig,
    worker: RayWorkerConfig,
    *,
    repository: Any = None,
    **controller_kwargs: Any,
) -> AsyncIterator[tuple[ControllerService, RayWorkerPool]]:
    """A controller whose workers a ``RayWorkerPool`` places on the connected Ray cluster."""
    ctrl = ControllerService(
        # as `clockwork serve` runs it: a worker that (re)joins gets models loaded at once
        make_policy("clockwork", warm_start=True),
        [],
        link_secret=SECRET,
        ping_interval_s=0.05,
        silence_pings=40,
        connect_backoff_s=(0.02, 0.2),
        **controller_kwargs,
    )
    ray_pool = RayWorkerPool(pool, worker, SECRET, repository)
    ray_pool.connect()
    await ctrl.start()
    watcher = asyncio.create_task(ray_pool.run(ctrl))
    try:
        yield ctrl, ray_pool
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await ray_pool.close()
        await ctrl.close()
