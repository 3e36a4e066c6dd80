"""Worker actors on a multi-node Ray cluster simulated on this machine (Ray's own test
utility), emulated backends: placed one per declared GPU, a killed one restarted and re-joined
with every request answered exactly once, a node added (and removed) while serving."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from clockwork.cluster_ray.config import RayPoolConfig, RayWorkerConfig
from clockwork.core.actions import ActionResult
from clockwork.core.requests import Response, ResponseStatus
from clockwork.service import ControllerService
from clockwork.service.bench_cluster import free_ports

from support.http_model import infer_zeros, wait_ready
from support.ray_cluster import SECRET, ray_cluster, ray_served

pytestmark = [
    pytest.mark.ray,
    # Ray's own modules warn about their internals
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

MS = 1_000_000
# GPU nodes only serve (the head is the controller's node); our links on the loopback
POOL = RayPoolConfig(workers_per_node=0, poll_interval_s=0.3, restart_backoff_s=(0.1, 1.0))
WORKER = RayWorkerConfig(models=3, host="127.0.0.1")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with ray_cluster([{"num_cpus": 1, "num_gpus": 2}, {"num_cpus": 1, "num_gpus": 1}]) as c:
        yield c


def run(coro: Any, timeout_s: float = 120.0) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(timeout_s):
            return await coro

    return asyncio.run(bounded())


def describe(pool: Any) -> dict[str, dict[str, Any]]:
    import ray

    infos = ray.get([w.actor.describe.remote() for w in pool.workers.values()], timeout=60)
    return {i["worker_id"]: i for i in infos}


def group_state(group: Any) -> str:
    import ray

    return str(ray.util.placement_group_table(group)["state"])


async def until(cond: Any, timeout_s: float = 60.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not cond():
            await asyncio.sleep(0.05)


async def steady_load(
    ctrl: ControllerService, n: int, gap_s: float, during: Any = None
) -> list[Response]:
    """``n`` requests ``gap_s`` apart over every model; ``during(i)`` awaited before the i-th."""
    futures = []
    for i in range(n):
        if during is not None:
            await during(i)
        models = sorted(ctrl.models)
        futures.append(ctrl.submit_nowait(models[i % len(models)], timeout_ns=200 * MS))
        await asyncio.sleep(gap_s)
    answers = await asyncio.gather(*futures)
    return [a[0] for a in answers]


def test_workers_placed_one_per_declared_gpu(cluster: Any) -> None:
    async def main() -> None:
        async with ray_served(POOL, WORKER) as (ctrl, pool):
            await ctrl.wait_workers(3, timeout_s=90)
            infos = describe(pool)
            by_node: dict[str, list[list[str]]] = {}
            for info in infos.values():
                by_node.setdefault(info["node_id"], []).append(info["gpu_ids"])
            # the 2-GPU node runs two workers, each owning one of its GPUs; the 1-GPU node one;
            # the head (no GPU) none
            assert sorted(sorted(map(tuple, g)) for g in by_node.values()) == [
                [("0",)],
                [("0",), ("1",)],
            ]
            assert set(ctrl.workers) == set(infos)
            # each worker runs inside a placement group of its own, which holds its GPU
            for wid, w in pool.workers.items():
                assert infos[wid]["placement_group"] == w.group.id.hex()
                assert group_state(w.group) == "CREATED"
            assert len({i["placement_group"] for i in infos.values()}) == 3
            responses = await steady_load(ctrl, 30, 0.005)
            assert Counter(r.status for r in responses)[ResponseStatus.SUCCESS] >= 25

    run(main())


def test_killed_worker_restarts_and_rejoins_every_request_answered_once(cluster: Any) -> None:
    import ray

    answered: Counter[int] = Counter()
    results: list[tuple[str, int]] = []

    def on_result(result: ActionResult, now_ns: int) -> None:
        results.append((result.device.worker, time.monotonic_ns()))

    async def main() -> None:
        async with ray_served(
            POOL,
            WORKER,
            on_response=lambda r: answered.update([r.request_id]),
            on_action_result=on_result,
        ) as (ctrl, pool):
            await ctrl.wait_workers(3, timeout_s=90)
            victim = sorted(pool.workers)[0]
            before = describe(pool)[victim]
            rejoined_ns: list[int] = []

            async def kill_then_wait(i: int) -> None:
                if i == 100:
                    joins = ctrl.stats.joins
                    ray.kill(pool.workers[victim].actor, no_restart=False)
                    await until(lambda: victim not in ctrl.workers, 30)
                    # requests keep coming meanwhile (this coroutine only delays the next)
                    await until(lambda: victim in ctrl.workers and ctrl.stats.joins > joins)
                    rejoined_ns.append(time.monotonic_ns())

            responses = await steady_load(ctrl, 250, 0.004, during=kill_then_wait)
            assert ctrl.pending() == 0
            after = describe(pool)[victim]
            assert after["pid"] != before["pid"] and after["starts"] == 2
            assert after["address"] == before["address"]  # listening on its former port
            assert ctrl.stats.losses >= 1
            ok = Counter(r.status for r in responses)[ResponseStatus.SUCCESS]
            assert ok >= 150, Counter(r.status for r in responses)
            # every request answered, each exactly once
            assert len(responses) == 250
            assert len(answered) == 250 and set(answered.values()) == {1}
            # the restarted worker serves: with the others let go, it answers alone
            for wid, w in pool.workers.items():
                if wid != victim and w.link is not None:
                    await ctrl.remove_worker(w.link)
            assert ctrl.workers == (victim,)
            response, _ = await ctrl.submit(sorted(ctrl.models)[0], timeout_ns=2000 * MS)
            assert response.status is ResponseStatus.SUCCESS, response
            assert any(w == victim and t > rejoined_ns[0] for w, t in results)

    run(main())


def test_node_added_while_serving_joins_and_a_removed_one_leaves(cluster: Any) -> None:
    async def main() -> None:
        async with ray_served(POOL, WORKER) as (ctrl, pool):
            await ctrl.wait_workers(3, timeout_s=90)
            first = set(ctrl.workers)
            added: list[Any] = []

            async def add_node(i: int) -> None:
                if i == 20:
                    added.append(
                        cluster.add_node(num_cpus=1, num_gpus=1, object_store_memory=80 * 2**20)
                    )
                    await until(lambda: len(ctrl.workers) == 4, 90)

            responses = await steady_load(ctrl, 60, 0.005, during=add_node)
            assert len(responses) == 60 and ctrl.pending() == 0
            (new,) = set(ctrl.workers) - first
            assert describe(pool)[new]["node_id"] == added[0].node_id
            group = pool.workers[new].group
            cluster.remove_node(added[0])
            await until(lambda: new not in ctrl.workers and new not in pool.workers, 90)
            assert set(ctrl.workers) == first
            # the worker let go, its placement group is gone too
            await until(lambda: group_state(group) == "REMOVED", 30)

    run(main(), timeout_s=240)


def clockwork_cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "clockwork.cli.main", *argv]


RAY_CLI = ("--ray-workers-per-node", "0", "--ray-worker-host", "127.0.0.1")


def test_controller_command_with_ray_address(cluster: Any) -> None:
    # the secret comes from the environment and reaches the actors through Ray, never argv
    env = {**os.environ, "CLOCKWORK_CLUSTER_SECRET": SECRET.decode()}
    argv = clockwork_cli(
        "controller", "--ray", cluster.address, *RAY_CLI, "--ray-models", "2",
        "--demo-rps", "20", "--duration", "10",
    )  # fmt: skip
    done = subprocess.run(argv, check=False, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    # each of the 3 GPU workers joined (the status lines' counts depend on this machine's load)
    joined = set(re.findall(r"worker (ray-\S+) \(127\.0\.0\.1:\d+\) synced", done.stderr))
    assert len(joined) == 3, done.stderr[-3000:]
    final = re.search(r"final: .*SUCCESS (\d+)", done.stderr)
    assert final is not None and int(final.group(1)) > 0, done.stderr[-3000:]


def test_serve_command_with_ray_answers_over_http(cluster: Any) -> None:
    (port,) = free_ports(1)
    argv = clockwork_cli(
        "serve", "--ray", cluster.address, *RAY_CLI, "--ray-backend", "emulated",
        "--ray-models", "1", "--host", "127.0.0.1", "--http-port", str(port),
        "--grpc-port", "0", "--status-interval", "0", "--decode-processes", "0",
        # decoding a 600 KB JSON body on a loaded 2-core machine may take longer than 100 ms
        "--default-slo-ms", "5000",
    )  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}/v2/models/resnet50_v2-0000"
        wait_ready(base, alive=proc)
        answer = infer_zeros(base)
        assert answer["model_name"] == "resnet50_v2-0000" and answer["outputs"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err[-3000:]


def test_worker_out_of_restarts_is_let_go(cluster: Any) -> None:
    import dataclasses

    import ray

    async def main() -> None:
        no_restarts = dataclasses.replace(POOL, max_restarts=0)
        async with ray_served(no_restarts, WORKER) as (ctrl, pool):
            await ctrl.wait_workers(3, timeout_s=90)
            victim = sorted(pool.workers)[0]
            ray.kill(pool.workers[victim].actor, no_restart=False)
            # lost at once; given up (its link removed) once Ray keeps saying it is dead
            await until(lambda: victim not in ctrl.workers, 30)
            await until(lambda: pool.workers[victim].failed is not None, 60)
            assert ctrl.configured_workers == 2
            await until(lambda: group_state(pool.workers[victim].group) == "REMOVED", 30)
            assert len(ctrl.workers) == 2
            response, _ = await ctrl.submit(sorted(ctrl.models)[0], timeout_ns=1000 * MS)
            assert response.status is ResponseStatus.SUCCESS

    run(main())
