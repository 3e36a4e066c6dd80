"""A controller and emulated workers over in-memory connections, for service tests."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from clockwork.core.policies import make_policy
from clockwork.core.policies.base import PolicyBase
from clockwork.service import ControllerService, WorkerService
from clockwork.service.memory_network import MemoryNetwork
from clockwork.worker.assembly import emulated_setup

PROFILE = "resnet50_v2-V100-32GB"


def run(coro: Coroutine[Any, Any, None], timeout_s: float = 20.0) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(timeout_s):
            await coro

    asyncio.run(bounded())


def worker(wid: str, models: int = 2) -> WorkerService:
    devices, infos = emulated_setup(wid, 1, models, PROFILE)
    return WorkerService(wid, devices, infos)


def controller(
    net: MemoryNetwork, *ports: int, policy: PolicyBase | None = None
) -> ControllerService:
    return ControllerService(
        policy or make_policy("clockwork"),
        [("mem", p) for p in ports],
        connector=net.connect,
        connect_backoff_s=(0.001, 0.01),
    )
