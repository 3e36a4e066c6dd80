"""The action round trip on idle links, workers started directly vs started by Ray.

One in-process controller (``ControllerService``, clockwork policy) drives 2 emulated workers
whose profile executes in ~0 ms (a copy of the shipped ResNet-50 V100 profile with every batch
size's execution set to ``--exec-us``, inputs and outputs of a few bytes), one request at a time
(``--gap-ms`` apart: the links are idle): the controller's ``Infer`` -> ``ActionResult`` round
trip is then the link, the codecs and the worker's own path.

- ``direct``: 2 ``clockwork worker --backend emulated`` processes on 127.0.0.1.
- ``ray``: a Ray cluster simulated by ``ray.cluster_utils.Cluster`` (a head and 2 nodes of one
  declared GPU), one worker actor per GPU (``RayWorkerPool``, in its placement group); the
  controller connects to the addresses they report, over the same transport.

Printed per mode: the round trip (controller sent -> result received, its clock) p50/p99/max,
and the same less the execution the worker reports (ended - began).

    .venv/bin/python bench/ray_action_rtt.py --requests 2000

Needs the ``clockwork[ray]`` extra for ``ray``. Wall-clock figures on a shared machine are
noisy: compare the modes within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

from clockwork.core.actions import Action, ActionResult, Infer
from clockwork.core.policies import make_policy
from clockwork.core.requests import ResponseStatus
from clockwork.service import ControllerService
from clockwork.service.bench_cluster import free_ports, spawn_child
from clockwork.transport.cluster_secret import child_env, new_secret

MS = 1_000_000
MB = 2**20
WORKERS = 2


def fast_profile(exec_us: float, out: Path) -> Path:
    """The shipped ResNet-50 V100 profile with ~0 ms execution and tiny tensors."""
    source = resources.files("clockwork.profiles") / "resnet50_v2-V100-32GB.json"
    profile = json.loads(source.read_text())
    profile["exec_ns"] = {b: round(exec_us * 1000) for b in profile["exec_ns"]}
    profile["input_bytes"] = profile["output_bytes"] = 16
    profile["measured"] = {"by": "bench/ray_action_rtt.py", "where": "-", "how": "synthetic"}
    path = out / "fast-V100-32GB.json"
    path.write_text(json.dumps(profile))
    return path


def percentiles(values: list[int]) -> str:
    ordered = sorted(values)
    if not ordered:
        return "none"

    def q(f: float) -> float:
        return ordered[min(len(ordered) - 1, int(f * len(ordered)))] / MS

    return f"p50 {q(0.5):.3f} ms  p99 {q(0.99):.3f} ms  max {ordered[-1] / MS:.3f} ms"


@contextlib.asynccontextmanager
async def direct_workers(secret: bytes, profile: Path) -> AsyncIterator[list[tuple[str, int]]]:
    ports = free_ports(WORKERS)
    procs: list[subprocess.Popen[bytes]] = []
    for i, port in enumerate(ports):
        command = [
            sys.executable, "-m", "clockwork.cli.main", "worker", "--listen",
            f"127.0.0.1:{port}", "--id", f"direct-{i}", "--backend", "emulated",
            "--devices", "1", "--models", "2", "--profile", str(profile),
        ]  # fmt: skip
        procs.append(spawn_child(command, subprocess.DEVNULL, child_env(secret)))
    try:
        yield [("127.0.0.1", p) for p in ports]
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)


@contextlib.asynccontextmanager
async def ray_workers(secret: bytes, profile: Path) -> AsyncIterator[list[tuple[str, int]]]:
    import ray
    from ray.cluster_utils import Cluster

    from clockwork.cluster_ray.config import RayPoolConfig, RayWorkerConfig
    from clockwork.cluster_ray.pool import RayWorkerPool

    head = {"num_cpus": 1, "num_gpus": 0, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args={**head, "object_store_memory": 80 * MB})
    for _ in range(WORKERS):
        cluster.add_node(num_cpus=1, num_gpus=1, object_store_memory=80 * MB)
    ray.init(address=cluster.address, log_to_driver=False)
    pool = RayWorkerPool(
        RayPoolConfig(workers_per_node=0, poll_interval_s=0.5),
        RayWorkerConfig(models=2, profile=str(profile), host="127.0.0.1"),
        secret,
    )
    pool.connect()
    try:
        yield await pool.wait_addresses(WORKERS, timeout_s=180)
    finally:
        await pool.close()
        ray.shutdown()
        cluster.shutdown()


async def measure(mode: str, requests: int, gap_ms: float, profile: Path) -> None:
    secret = new_secret()
    sent: dict[int, int] = {}
    rtt: list[int] = []
    beyond_exec: list[int] = []

    def on_sent(action: Action, now_ns: int) -> None:
        if isinstance(action, Infer):
            sent[action.action_id] = now_ns

    def on_result(r: ActionResult, now_ns: int) -> None:
        start = sent.pop(r.action_id, None)
        if start is not None:
            rtt.append(now_ns - start)
            beyond_exec.append(now_ns - start - (r.ended_ns - r.began_ns))

    workers = direct_workers if mode == "direct" else ray_workers
    async with workers(secret, profile) as addresses:
        ctrl = ControllerService(
            make_policy("clockwork"),
            addresses,
            link_secret=secret,
            on_action_sent=on_sent,
            on_action_result=on_result,
        )
        await ctrl.start()
        try:
            await ctrl.wait_workers(WORKERS, timeout_s=120)
            models = sorted(ctrl.models)
            for m in models:  # loads, clock sync settled
                await ctrl.submit(m, timeout_ns=1000 * MS)
            await asyncio.sleep(1.0)
            rtt.clear()
            beyond_exec.clear()
            statuses: dict[ResponseStatus, int] = {}
            t0 = time.perf_counter()
            for i in range(requests):
                response, _ = await ctrl.submit(models[i % len(models)], timeout_ns=100 * MS)
                statuses[response.status] = statuses.get(response.status, 0) + 1
                await asyncio.sleep(gap_ms / 1000)
            wall_s = time.perf_counter() - t0
        finally:
            await ctrl.close()
    ok = statuses.get(ResponseStatus.SUCCESS, 0)
    print(f"[{mode}] {requests} requests in {wall_s:.1f} s, {ok} SUCCESS; {len(rtt)} Infers")
    print(f"[{mode}] Infer round trip            {percentiles(rtt)}")
    print(f"[{mode}] round trip less execution   {percentiles(beyond_exec)}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=2000, help="requests per mode, one at a time")
    p.add_argument("--gap-ms", type=float, default=2.0, help="pause after each answer")
    p.add_argument("--exec-us", type=float, default=10.0, help="emulated execution, any batch")
    p.add_argument("--modes", default="direct,ray", help="comma separated: direct, ray")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        profile = fast_profile(args.exec_us, Path(tmp))
        for mode in args.modes.split(","):
            asyncio.run(measure(mode.strip(), args.requests, args.gap_ms, profile))


if __name__ == "__main__":
    main()
