"""The controller's limit with 16-64 emulated GPUs across simulated Ray nodes: SLO attainment at
a sweep of Poisson rates, workers started by Ray (and, beside them, directly).

For each GPU count, the GPUs are split evenly over ``--nodes`` workers of several emulated V100s
each (``--models`` copies of the shipped ResNet-50 profile: enough capacity that the devices
are never the bottleneck, so the controller is):

- ``ray``: a Ray cluster simulated by ``ray.cluster_utils.Cluster``, a head and ``--nodes``
  nodes without GPUs, one CPU worker actor on each (``RayWorkerPool``, ``devices`` = GPUs /
  nodes, each in its placement group); the bench's controller connects to the addresses they
  report.
- ``direct``: the same workers as ``clockwork bench-cluster`` starts them (``WorkerProcesses``).

Each rate runs ``clockwork bench-cluster``'s drive (``run_bench``: a fresh controller, the
clockwork policy, Poisson arrivals, ``--slo-ms``) for ``--duration`` seconds against the same
workers; printed per run: attainment, goodput, the controller's CPU per request, late submits,
and the CPU seconds the run took in the worker processes and in Ray's other processes (its
daemons, idle workers: read from /proc, this venv's processes only), which share the machine.

    .venv/bin/python bench/ray_controller_limit.py --gpus 16,32,64 --rates 1000,2000,3000

Needs the ``clockwork[ray]`` extra for ``ray``. On a shared machine the limit moves with the
other load: compare within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator

from clockwork.core.policies import make_policy
from clockwork.core.units import NS_PER_S, ms_to_ns, s_to_ns
from clockwork.service.bench_cluster import WorkerProcesses, run_bench
from clockwork.telemetry.summary import RunInfo, format_attainment, summarize
from clockwork.transport.cluster_secret import new_secret
from clockwork.workload import PoissonOpenLoop

MB = 2**20
PROFILE = "resnet50_v2-V100-32GB"


@contextlib.contextmanager
def direct_workers(nodes: int, per_node: int, models: int) -> Iterator[tuple[list, bytes]]:
    with WorkerProcesses(nodes, per_node, models, PROFILE) as procs:
        yield procs.addresses, procs.secret


@contextlib.asynccontextmanager
async def ray_workers(nodes: int, per_node: int, models: int) -> AsyncIterator[tuple[list, bytes]]:
    import ray
    from ray.cluster_utils import Cluster

    from clockwork.cluster_ray.config import RayPoolConfig, RayWorkerConfig
    from clockwork.cluster_ray.pool import RayWorkerPool

    head = {"num_cpus": 1, "num_gpus": 0, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args={**head, "object_store_memory": 80 * MB})
    for _ in range(nodes):
        cluster.add_node(num_cpus=1, resources={"bench_node": 1}, object_store_memory=80 * MB)
    ray.init(address=cluster.address, log_to_driver=False)
    secret = new_secret()
    pool = RayWorkerPool(
        RayPoolConfig(workers_per_node=1, node_resource="bench_node", poll_interval_s=0.5),
        RayWorkerConfig(devices=per_node, models=models, host="127.0.0.1"),
        secret,
    )
    pool.connect()
    try:
        yield await pool.wait_addresses(nodes, timeout_s=180), secret
    finally:
        await pool.close()
        ray.shutdown()
        cluster.shutdown()


def cpu_by_kind() -> dict[str, float]:
    """CPU seconds so far of this process's descendants: the workers (``clockwork worker``
    processes, Ray's worker actors) and the rest (Ray's daemons and idle workers: the simulated
    cluster is started from here). Read from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    procs: dict[int, tuple[int, str, float]] = {}  # pid: parent, command line, CPU s
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                line = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the command name: state, ppid, ... utime (14th field), stime (15th)
        procs[int(pid)] = (int(fields[1]), line, (int(fields[11]) + int(fields[12])) / tick)
    ours = {os.getpid()}
    changed = True
    while changed:
        changed = False
        for pid, (parent, _, _) in procs.items():
            if parent in ours and pid not in ours:
                ours.add(pid)
                changed = True
    out = {"workers": 0.0, "ray": 0.0}
    for pid in ours - {os.getpid()}:
        _, line, cpu_s = procs[pid]
        worker = "RayWorkerActor" in line or "clockwork.cli.main worker" in line
        out["workers" if worker else "ray"] += cpu_s
    return out


async def sweep(addresses: list, secret: bytes, args: argparse.Namespace, label: str) -> None:
    gpus = args.nodes * args.per_node
    names = [f"resnet50_v2-{i:04d}" for i in range(args.models)]
    for rate in args.rates:
        workload = PoissonOpenLoop(
            names, rate, s_to_ns(args.duration), ms_to_ns(args.slo_ms), args.seed
        )
        cpu0 = cpu_by_kind()
        result = await run_bench(
            make_policy("clockwork"),
            addresses,
            workload,
            s_to_ns(args.duration),
            drain_ns=2 * NS_PER_S,
            status=None,
            startup_timeout_s=120,
            link_secret=secret,
        )
        info = RunInfo(
            policy="clockwork",
            workload={"kind": "poisson", "rate_rps": rate},
            duration_ns=s_to_ns(args.duration),
            devices=gpus,
            models=args.models,
            seed=args.seed,
            ideal_capacity_rps=0.0,
            sim_wall_s=result.wall_s,
            scheduler_cpu_s=result.cpu_s,
            extra={},
        )
        cpu1 = cpu_by_kind()
        s = summarize(result.requests.table(), result.actions.table(), info)
        n = max(1, result.submitted)
        attained = s["slo_attainment"]
        print(
            f"[{label}] {gpus} GPUs, {rate:g} req/s: attainment "
            f"{format_attainment(attained if isinstance(attained, float) else None)}  "
            f"goodput {float(str(s['goodput_rps'])):.0f}/s  requests {result.submitted}  "
            f"controller CPU {1e6 * result.cpu_s / n:.0f} us/request  "
            f"late submits {result.late_submits}  CPU s: workers "
            f"{cpu1['workers'] - cpu0['workers']:.1f}, Ray's other {cpu1['ray'] - cpu0['ray']:.1f}",
            flush=True,
        )


async def run_mode(mode: str, args: argparse.Namespace) -> None:
    label = f"{mode}, {args.nodes} nodes x {args.per_node}"
    if mode == "ray":
        async with ray_workers(args.nodes, args.per_node, args.models) as (addresses, secret):
            await sweep(addresses, secret, args, label)
    else:
        with direct_workers(args.nodes, args.per_node, args.models) as (addresses, secret):
            await sweep(addresses, secret, args, label)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gpus", default="16,32,64", help="comma separated GPU counts")
    p.add_argument("--nodes", type=int, default=4, help="simulated nodes (one worker each)")
    p.add_argument("--rates", default="1000,2000,3000", help="comma separated requests/s")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of arrivals per rate")
    p.add_argument("--slo-ms", type=float, default=100.0)
    p.add_argument("--models", type=int, default=16, help="emulated models per worker")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--modes", default="ray,direct", help="comma separated: ray, direct")
    args = p.parse_args()
    args.rates = [float(r) for r in args.rates.split(",")]
    for gpus in (int(g) for g in args.gpus.split(",")):
        if gpus % args.nodes:
            raise SystemExit(f"--gpus {gpus} does not split over {args.nodes} nodes")
        args.per_node = gpus // args.nodes
        for mode in args.modes.split(","):
            asyncio.run(run_mode(mode.strip(), args))


if __name__ == "__main__":
    main()
