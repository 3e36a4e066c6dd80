"""Which worker actors a Ray cluster should run: one per GPU of each alive node, and
``workers_per_node`` on each node without a GPU. Pure: computed from ``ray.nodes()``'s records."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: how many characters of a Ray node id name a worker (ids must fit the handshake's 64 bytes)
NODE_ID_CHARS = 12


@dataclass(frozen=True)
class NodeResources:
    """One Ray node as the placement sees it."""

    node_id: str
    alive: bool
    gpus: int
    cpus: float
    #: the names of its resources (custom ones too: a label such as ``clockwork``)
    resources: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Placement:
    """One worker actor: its id (stable across restarts), its node, and what it asks Ray for."""

    worker_id: str
    node_id: str
    num_gpus: int
    num_cpus: float

    @property
    def bundle(self) -> dict[str, float]:
        """Its placement group's one bundle: the devices Ray reserves for it (its GPUs, else
        its share of the node's CPUs)."""
        if self.num_gpus > 0:
            return {"GPU": float(self.num_gpus)}
        return {"CPU": self.num_cpus}


def nodes_from_ray(records: Iterable[Mapping[str, Any]]) -> list[NodeResources]:
    """``ray.nodes()``'s records as ``NodeResources``."""
    out = []
    for r in records:
        resources = r.get("Resources") or {}
        out.append(
            NodeResources(
                node_id=str(r["NodeID"]),
                alive=bool(r.get("Alive", False)),
                gpus=int(resources.get("GPU", 0)),
                cpus=float(resources.get("CPU", 0.0)),
                resources=frozenset(resources),
            )
        )
    return out


def plan_workers(
    nodes: Sequence[NodeResources], workers_per_node: int, node_resource: str | None = None
) -> list[Placement]:
    """The worker actors for the alive ``nodes`` (only those with resource ``node_resource``,
    if given): a node with GPUs gets one per GPU (each asks for one GPU and no CPU, so that Ray
    gives it a device of its own), a node without gets ``workers_per_node`` CPU workers sharing
    its CPUs (at most one CPU each)."""
    if workers_per_node < 0:
        raise ValueError(f"workers_per_node must be >= 0, got {workers_per_node}")
    out: list[Placement] = []
    for node in sorted(nodes, key=lambda n: n.node_id):
        if not node.alive or (node_resource is not None and node_resource not in node.resources):
            continue
        short = node.node_id[:NODE_ID_CHARS]
        if node.gpus > 0:
            out += [Placement(f"ray-{short}-g{i}", node.node_id, 1, 0.0) for i in range(node.gpus)]
        elif workers_per_node > 0 and node.cpus > 0:
            cpus = min(1.0, node.cpus / workers_per_node)
            out += [
                Placement(f"ray-{short}-c{i}", node.node_id, 0, cpus)
                for i in range(workers_per_node)
            ]
    return out
