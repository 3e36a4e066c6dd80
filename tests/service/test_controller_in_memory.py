"""The controller and emulated workers over in-memory connections: no ports, no sleeps."""

from __future__ import annotations

import asyncio

from clockwork.core.requests import ResponseStatus
from clockwork.service.memory_network import MemoryNetwork

from support.memory_cluster import controller, run, worker
from support.units import MS


def test_a_controller_joins_workers_and_serves_over_memory() -> None:
    async def main() -> None:
        net = MemoryNetwork()
        a, b = worker("a"), worker("b")
        net.plug("mem", 1, a)
        net.plug("mem", 2, b)
        ctrl = controller(net, 1, 2)
        await ctrl.start()
        try:
            await ctrl.wait_workers(2)
            assert sorted(ctrl.workers) == ["a", "b"]
            assert len(ctrl.models) == 2
            answers = await asyncio.gather(
                *(ctrl.submit(m, timeout_ns=1000 * MS) for m in sorted(ctrl.models) * 3)
            )
            assert [r.status for r, _ in answers] == [ResponseStatus.SUCCESS] * 6
            assert ctrl.pending() == 0
            assert (
                a.received[("Infer", sorted(ctrl.models)[0])]
                + b.received[("Infer", sorted(ctrl.models)[0])]
                >= 1
            )
        finally:
            await ctrl.close()
            await a.close()
            await b.close()

    run(main())


def test_an_unplugged_worker_is_lost_its_requests_answered_and_it_rejoins() -> None:
    async def main() -> None:
        net = MemoryNetwork()
        a = worker("a")
        net.plug("mem", 1, a)
        ctrl = controller(net, 1)
        await ctrl.start()
        try:
            await ctrl.wait_workers(1)
            model = sorted(ctrl.models)[0]
            # a load (cold model) and an inference take milliseconds on the emulated device:
            # pulled mid-way, the request is answered, not lost
            pending = ctrl.submit_nowait(model, timeout_ns=1000 * MS)
            await asyncio.sleep(0)
            net.unplug("mem", 1)
            response, _ = await pending
            assert response.status in (ResponseStatus.WORKER_LOST, ResponseStatus.OVERLOADED)
            assert ctrl.workers == ()
            assert ctrl.stats.losses == 1
            net.plug("mem", 1, a)
            await ctrl.wait_workers(1)
            response, _ = await ctrl.submit(model, timeout_ns=1000 * MS)
            assert response.status is ResponseStatus.SUCCESS
            assert ctrl.stats.joins == 2
        finally:
            await ctrl.close()
            await a.close()

    run(main())
