"""Repository loads of names no worker serves share one rescan: a burst of them costs the workers
one ``RescanRepository``, not one each (a real controller and an emulated worker on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from clockwork.core.events import ModelInfo
from clockwork.core.policies import make_policy
from clockwork.frontend.api import ErrorKind, FrontendError
from clockwork.frontend.metrics import ServingMetrics
from clockwork.frontend.server import ControllerModelServer
from clockwork.frontend.single_flight import SingleFlight
from clockwork.service import ControllerService, WorkerService
from clockwork.worker.assembly import emulated_setup

PROFILE = "resnet50_v2-V100-32GB"


class SlowRescan:
    """A worker's rescan that takes ``seconds`` and finds nothing; counts its runs and how many
    ran at once at most."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.runs = 0
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def __call__(self) -> Sequence[ModelInfo]:
        with self._lock:
            self.runs += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(self.seconds)
        with self._lock:
            self.running -= 1
        return []


def test_concurrent_loads_of_unknown_names_share_one_rescan() -> None:
    rescan = SlowRescan(0.3)

    async def main() -> None:
        devices, infos = emulated_setup("w0", 1, 1, PROFILE)
        worker = WorkerService("w0", devices, infos, rescan=rescan)
        await worker.start("127.0.0.1", 0)
        ctrl = ControllerService(make_policy("clockwork"), [("127.0.0.1", worker.port)])
        server = ControllerModelServer(ctrl, ServingMetrics())
        await ctrl.start()
        try:
            await ctrl.wait_workers(1)
            burst = [server.load_model(f"made-up-{i}") for i in range(20)]
            results = await asyncio.gather(*burst, return_exceptions=True)
            assert all(
                isinstance(r, FrontendError) and r.kind is ErrorKind.NOT_FOUND for r in results
            ), results
            assert rescan.runs == 1
            # a load after that one finished rescans again (a directory may have come since)
            with pytest.raises(FrontendError):
                await server.load_model("made-up-again")
            assert rescan.runs == 2 and rescan.most_at_once == 1
            # a known model is loaded without any rescan
            await server.load_model("resnet50_v2-0000")
            assert rescan.runs == 2
        finally:
            await ctrl.close()
            await worker.close()

    asyncio.run(main())


def test_single_flight_shares_results_errors_and_survives_a_cancelled_caller() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        outcome: list[object] = [7]

        async def operation() -> int:
            await gate.wait()
            value = outcome[0]
            if isinstance(value, Exception):
                raise value
            assert isinstance(value, int)
            return value

        flight = SingleFlight(operation)
        first = asyncio.ensure_future(flight())
        others = [asyncio.ensure_future(flight()) for _ in range(3)]
        await asyncio.sleep(0)
        first.cancel()  # the caller that started it gives up: the others still get the answer
        await asyncio.sleep(0)
        assert flight.in_flight
        gate.set()
        assert await asyncio.gather(*others) == [7, 7, 7]
        assert flight.runs == 1 and not flight.in_flight

        outcome[0] = RuntimeError("rescan failed")
        gate.clear()
        both = [asyncio.ensure_future(flight()) for _ in range(2)]
        await asyncio.sleep(0)
        gate.set()
        errors = await asyncio.gather(*both, return_exceptions=True)
        assert [str(e) for e in errors] == ["rescan failed"] * 2
        assert flight.runs == 2

    asyncio.run(main())
