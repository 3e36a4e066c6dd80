"""Workers started directly vs started by Ray, side by side, with emulated GPUs on this machine.

Both modes run the same in-process controller (``ControllerService``, clockwork policy with
``clockwork serve``'s warm start and backlog admission) over
the same transport against 4 emulated V100 workers of one device each, drive the same seeded
Poisson load, and kill one worker halfway through:

- ``direct``: 4 ``clockwork worker --backend emulated`` processes, each under a
  ``ChildSupervisor`` (as ``clockwork serve`` runs its local worker: restart on exit, same port,
  backoff from 0.2 s); the kill is a SIGKILL of the victim's process.
- ``ray``: a Ray cluster simulated by ``ray.cluster_utils.Cluster`` (a head node and 2 nodes of
  2 declared GPUs), a ``RayWorkerPool`` placing one worker actor per GPU (restart backoff from
  0.2 s); the kill is ``ray.kill(actor, no_restart=False)``.

Printed per mode: requests by status, attainment (SUCCESS / all), goodput (SUCCESS per second),
Infer round trip (controller sent -> result received, p50/p99, execution included), the time
from the kill to the victim's re-join (schedulable again) and to its first successful action
after the re-join ("never" when the scheduler had no need of it before the load ended: the warm
start loads each model once somewhere, and the other workers had the capacity).

    .venv/bin/python bench/ray_vs_direct.py --rate 200 --duration 20

Needs the ``clockwork[ray]`` extra for the ``ray`` mode. Wall-clock figures on a shared machine
are noisy: compare the modes within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from clockwork.core.actions import Action, ActionResult, ActionStatus, Infer
from clockwork.core.policies import make_policy
from clockwork.core.requests import ResponseStatus
from clockwork.service import ControllerService
from clockwork.service.bench_cluster import free_ports, spawn_child
from clockwork.service.supervisor import ChildSupervisor
from clockwork.transport.cluster_secret import child_env, new_secret

MS = 1_000_000
MB = 2**20


@dataclass
class Record:
    responses: Counter[ResponseStatus]
    sent_ns: dict[int, int]
    rtt_ns: list[int]
    results: list[tuple[str, int, ActionStatus]]  # worker, time received, status
    joins: list[tuple[str, int]]


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / MS if ordered else float("nan")


def make_controller(secret: bytes, rec: Record, addresses: list[tuple[str, int]]) -> Any:
    def sent(action: Action, now_ns: int) -> None:
        if isinstance(action, Infer):
            rec.sent_ns[action.action_id] = now_ns

    def result(r: ActionResult, now_ns: int) -> None:
        t = time.monotonic_ns()
        start = rec.sent_ns.pop(r.action_id, None)
        if start is not None:
            rec.rtt_ns.append(t - start)
        rec.results.append((r.device.worker, t, r.status))

    return ControllerService(
        # as `clockwork serve` runs it: warm start (a worker that re-joins gets models loaded),
        # refusal at arrival of what the backlog cannot serve in time, estimates per device
        make_policy(
            "clockwork", warm_start=True, backlog_admission=True, per_device_estimates=True
        ),
        addresses,
        link_secret=secret,
        connect_backoff_s=(0.05, 0.5),
        on_response=lambda r: rec.responses.update([r.status]),
        on_action_sent=sent,
        on_action_result=result,
        on_worker_joined=lambda w, d: rec.joins.append((w, time.monotonic_ns())),
    )


async def drive(
    ctrl: ControllerService, rate: float, duration_s: float, kill: Callable[[], str] | None
) -> tuple[str, int]:
    """Poisson arrivals at ``rate`` for ``duration_s``, over the models; ``kill`` halfway."""
    rng = random.Random(1)
    models = sorted(ctrl.models)
    futures: list[asyncio.Future[Any]] = []
    start = time.monotonic()
    next_at = start
    victim, killed_ns = "", 0
    while next_at < start + duration_s:
        next_at += rng.expovariate(rate)
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if kill is not None and not victim and time.monotonic() - start >= duration_s / 2:
            killed_ns = time.monotonic_ns()
            victim = kill()
        futures.append(ctrl.submit_nowait(rng.choice(models), timeout_ns=100 * MS))
    await asyncio.gather(*futures, return_exceptions=True)
    return victim, killed_ns


def report(mode: str, rec: Record, duration_s: float, victim: str, killed_ns: int) -> None:
    total = sum(rec.responses.values())
    ok = rec.responses[ResponseStatus.SUCCESS]
    rejoin = next((t for w, t in rec.joins if w == victim and t > killed_ns), None)
    after = rejoin if rejoin is not None else killed_ns
    served = next(
        (t for w, t, s in rec.results if w == victim and t > after and s is ActionStatus.SUCCESS),
        None,
    )
    statuses = ", ".join(f"{k.value} {v}" for k, v in sorted(rec.responses.items(), key=str))
    print(f"[{mode}] requests {total}: {statuses}")
    print(
        f"[{mode}] attainment {100 * ok / max(1, total):.2f}%  goodput {ok / duration_s:.1f}/s  "
        f"Infer round trip p50 {percentile(rec.rtt_ns, 0.5):.2f} ms  "
        f"p99 {percentile(rec.rtt_ns, 0.99):.2f} ms"
    )
    rj = "never" if rejoin is None else f"{(rejoin - killed_ns) / 1e9:.2f} s"
    sv = "never" if served is None else f"{(served - killed_ns) / 1e9:.2f} s"
    if victim:
        print(
            f"[{mode}] killed {victim}: re-joined after {rj}, first success after {sv}", flush=True
        )


@contextlib.asynccontextmanager
async def direct_workers(
    secret: bytes, models: int, workers: int, devices: int
) -> AsyncIterator[tuple[Any, Any]]:
    ports = free_ports(workers)
    sups: list[ChildSupervisor] = []
    for i, port in enumerate(ports):
        command = [
            sys.executable, "-m", "clockwork.cli.main", "worker", "--listen",
            f"127.0.0.1:{port}", "--id", f"direct-{i}", "--backend", "emulated",
            "--devices", str(devices), "--models", str(models),
        ]  # fmt: skip

        def spawn(command: list[str] = command) -> subprocess.Popen[bytes]:
            return spawn_child(command, subprocess.DEVNULL, child_env(secret))

        sups.append(ChildSupervisor(spawn, f"worker {i}", backoff_s=(0.2, 10.0)))
    for s in sups:
        s.start()
    tasks = [asyncio.create_task(s.run()) for s in sups]

    def kill() -> str:
        pid = sups[0].pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        return "direct-0"

    try:
        yield [("127.0.0.1", p) for p in ports], kill
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in sups:
            s.stop()


async def run_mode(
    mode: str, rate: float, duration_s: float, models: int, devices: int, kill_one: bool
) -> None:
    """``devices`` 1: 4 workers of one device (Ray: one per declared GPU of 2 nodes); more: 2
    workers of ``devices`` each (Ray: one CPU worker on each of 2 nodes without GPUs)."""
    workers = 4 if devices == 1 else 2
    secret = new_secret()
    rec = Record(Counter(), {}, [], [], [])
    if mode == "direct":
        async with direct_workers(secret, models, workers, devices) as (addresses, kill):
            ctrl = make_controller(secret, rec, addresses)
            await ctrl.start()
            try:
                await ctrl.wait_workers(workers, timeout_s=120)
                victim, killed_ns = await drive(ctrl, rate, duration_s, kill if kill_one else None)
            finally:
                await ctrl.close()
    else:
        import ray
        from ray.cluster_utils import Cluster

        from clockwork.cluster_ray.config import RayPoolConfig, RayWorkerConfig
        from clockwork.cluster_ray.pool import RayWorkerPool

        head = {"num_cpus": 1, "num_gpus": 0, "include_dashboard": False}
        cluster = Cluster(
            initialize_head=True, head_node_args={**head, "object_store_memory": 80 * MB}
        )
        for _ in range(2):
            gpus = 2 if devices == 1 else 0
            cluster.add_node(
                num_cpus=1,
                num_gpus=gpus,
                resources={"bench_node": 1},
                object_store_memory=80 * MB,
            )
        ray.init(address=cluster.address, log_to_driver=False)
        pool = RayWorkerPool(
            RayPoolConfig(
                workers_per_node=0 if devices == 1 else 1,
                # the head (the controller's node) serves nothing
                node_resource="bench_node",
                poll_interval_s=1.0,
                restart_backoff_s=(0.2, 10.0),
            ),
            RayWorkerConfig(models=models, devices=devices, host="127.0.0.1"),
            secret,
        )
        pool.connect()
        ctrl = make_controller(secret, rec, [])
        await ctrl.start()
        watcher = asyncio.create_task(pool.run(ctrl))

        def kill() -> str:
            victim = sorted(pool.workers)[0]
            ray.kill(pool.workers[victim].actor, no_restart=False)
            return victim

        try:
            await ctrl.wait_workers(workers, timeout_s=120)
            victim, killed_ns = await drive(ctrl, rate, duration_s, kill if kill_one else None)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await pool.close()
            await ctrl.close()
            ray.shutdown()
            cluster.shutdown()
    report(mode, rec, duration_s, victim, killed_ns)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=200.0, help="requests per second (Poisson)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load per mode")
    p.add_argument("--models", type=int, default=8, help="emulated models per worker")
    p.add_argument("--modes", default="direct,ray", help="comma separated: direct, ray")
    p.add_argument(
        "--devices", type=int, default=1, help="emulated devices per worker (see run_mode)"
    )
    p.add_argument("--no-kill", action="store_true", help="kill no worker")
    args = p.parse_args()
    for mode in args.modes.split(","):
        asyncio.run(
            run_mode(
                mode.strip(),
                args.rate,
                args.duration,
                args.models,
                args.devices,
                not args.no_kill,
            )
        )


if __name__ == "__main__":
    main()
