"""Which worker actors a Ray cluster gets (no Ray needed)."""

from __future__ import annotations

import pytest

from clockwork.cluster_ray.placement import NodeResources, nodes_from_ray, plan_workers


def test_one_worker_per_gpu_and_cpu_workers_on_nodes_without() -> None:
    nodes = [
        NodeResources("aaaaaaaaaaaaaaaa", True, gpus=2, cpus=8),
        NodeResources("bbbbbbbbbbbbbbbb", True, gpus=0, cpus=1),
        NodeResources("cccccccccccccccc", False, gpus=4, cpus=8),  # dead: nothing
    ]
    plan = plan_workers(nodes, workers_per_node=2)
    assert [(p.worker_id, p.num_gpus, p.num_cpus) for p in plan] == [
        ("ray-aaaaaaaaaaaa-g0", 1, 0.0),
        ("ray-aaaaaaaaaaaa-g1", 1, 0.0),
        ("ray-bbbbbbbbbbbb-c0", 0, 0.5),
        ("ray-bbbbbbbbbbbb-c1", 0, 0.5),
    ]
    assert {p.node_id for p in plan} == {"aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"}
    # each one's placement group bundle: its GPU, else its share of the CPUs
    assert [p.bundle for p in plan] == [{"GPU": 1.0}, {"GPU": 1.0}, {"CPU": 0.5}, {"CPU": 0.5}]
    # 0: only the GPUs serve
    assert [p.worker_id for p in plan_workers(nodes, 0)] == [
        "ray-aaaaaaaaaaaa-g0",
        "ray-aaaaaaaaaaaa-g1",
    ]
    # only the nodes labelled for us
    labelled = [NodeResources("dddddddddddddddd", True, 1, 1, frozenset({"GPU", "clockwork"}))]
    assert [p.worker_id for p in plan_workers([*nodes, *labelled], 1, "clockwork")] == [
        "ray-dddddddddddd-g0"
    ]
    with pytest.raises(ValueError, match="workers_per_node"):
        plan_workers(nodes, -1)


def test_nodes_from_ray_records() -> None:
    records = [
        {"NodeID": "n1", "Alive": True, "Resources": {"CPU": 2.0, "GPU": 3.0}},
        {"NodeID": "n2", "Alive": False, "Resources": {}},
    ]
    assert nodes_from_ray(records) == [
        NodeResources("n1", True, 3, 2.0, frozenset({"CPU", "GPU"})),
        NodeResources("n2", False, 0, 0.0),
    ]
