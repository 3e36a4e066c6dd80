"""What a Ray worker pool is told: how to reach Ray, where workers go, what they serve."""

from __future__ import annotations

from dataclasses import dataclass

from clockwork.core.errors import ConfigurationError

BACKENDS = ("emulated", "torch")


@dataclass(frozen=True)
class RayWorkerConfig:
    """What each worker actor serves. ``emulated``: ``devices`` emulated devices with ``models``
    copies of ``profile`` (as ``clockwork worker --backend emulated``); ``torch``: the models of
    the repository, on the actor's GPU if Ray gave it one, else the CPU (``threads``).
    ``host``: the address to listen on and report (None: the node's IP as Ray knows it)."""

    backend: str = "emulated"
    devices: int = 1
    models: int = 10
    profile: str = "resnet50_v2-V100-32GB"
    threads: int = 1
    host: str | None = None
    controller_silence_s: float = 3.0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigurationError(
                f"Ray worker backend {self.backend!r} is not one of {BACKENDS}"
            )
        if self.devices < 1 or self.models < 1 or self.threads < 1:
            raise ConfigurationError("Ray workers need devices, models and threads >= 1")


@dataclass(frozen=True)
class RayPoolConfig:
    """``address``: the Ray cluster (None: ``$RAY_ADDRESS`` or a new local one);
    ``workers_per_node``: CPU workers on each node without GPUs (0: none); ``node_resource``:
    only nodes with this Ray resource (e.g. a custom ``clockwork`` label) get workers;
    ``max_restarts``: how often Ray restarts one worker actor (-1: without end), each restart
    after a backoff doubling from ``restart_backoff_s[0]`` to ``restart_backoff_s[1]`` (from
    the low end again after ``stable_s`` up); ``poll_interval_s``: how often the node list is
    read for new nodes; ``start_timeout_s``: how long a worker may take to listen (a torch
    worker profiles first); ``detached_prefix``: name each worker actor and its placement group
    with this prefix and detach them from this process, so that they outlive it (a controller
    actor that Ray restarts finds its workers, and their resident models, again)."""

    address: str | None = None
    workers_per_node: int = 1
    node_resource: str | None = None
    max_restarts: int = -1
    restart_backoff_s: tuple[float, float] = (0.2, 10.0)
    stable_s: float = 60.0
    poll_interval_s: float = 2.0
    start_timeout_s: float = 900.0
    detached_prefix: str | None = None

    def __post_init__(self) -> None:
        low, high = self.restart_backoff_s
        if self.workers_per_node < 0 or self.max_restarts < -1:
            raise ConfigurationError("--ray-workers-per-node must be >= 0, max_restarts >= -1")
        if not 0 <= low <= high or self.poll_interval_s <= 0 or self.start_timeout_s <= 0:
            raise ConfigurationError("Ray pool: bad backoff, poll interval or start timeout")
