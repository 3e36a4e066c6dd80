"""``ControllerService.refuse_early``: a refusal the scheduler can give before it takes a request
is given at once, and the request is counted and answered as a submitted one."""

from __future__ import annotations

import asyncio

from clockwork.core.policies import make_policy
from clockwork.core.requests import Response, ResponseStatus
from clockwork.service import ControllerService, WorkerService
from clockwork.worker.assembly import emulated_setup

from support.units import MS


def test_a_backlog_that_leaves_no_room_refuses_at_once_and_counts_it() -> None:
    responses: list[Response] = []

    async def main() -> None:
        devices, infos = emulated_setup("w0", 1, 1, "resnet50_v2-V100-32GB")
        worker = WorkerService("w0", devices, infos)
        await worker.start("127.0.0.1", 0)
        ctrl = ControllerService(
            make_policy("clockwork", backlog_admission=True),
            [("127.0.0.1", worker.port)],
            ping_interval_s=0.05,
            silence_pings=40,
            on_response=responses.append,
        )
        await ctrl.start()
        try:
            await ctrl.wait_workers(1)
            (model,) = ctrl.models
            first, _ = await ctrl.submit(model, timeout_ns=2000 * MS)  # loads it
            assert first.status is ResponseStatus.SUCCESS
            # nothing queued, the device idle: it may be taken
            assert ctrl.refuse_early(model, timeout_ns=8 * MS) is None
            # a burst: the device is planned a batch of 16 (17 ms) ahead, so a request with
            # 8 ms to go cannot be run in time, whatever the order
            burst = [ctrl.submit_nowait(model, timeout_ns=100 * MS) for _ in range(60)]
            await asyncio.sleep(0)  # the scheduler takes them and plans
            refusal = ctrl.refuse_early(model, timeout_ns=8 * MS)
            assert refusal is not None and refusal.status is ResponseStatus.OVERLOADED
            assert "could run at most 0 before its deadline" in refusal.detail
            assert ctrl.stats.refused_early == 1
            # a deadline beyond the backlog, or a model the scheduler must judge itself
            assert ctrl.refuse_early(model, timeout_ns=5000 * MS) is None
            assert ctrl.refuse_early("no-such-model", timeout_ns=8 * MS) is None
            # a call of 500 samples cannot all be run within 200 ms behind the burst: refused
            # whole, each sample counted and answered
            assert ctrl.refuse_early(model, timeout_ns=200 * MS) is None  # one would fit
            whole = ctrl.refuse_early(model, timeout_ns=200 * MS, count=500)
            assert whole is not None and "queued ahead of its 500 samples" in whole.detail
            assert ctrl.stats.refused_early == 501
            await asyncio.gather(*burst)
            # counted and answered like every other request, exactly once
            assert ctrl.stats.submitted == ctrl.stats.answered == 562
            ids = [r.request_id for r in responses]
            assert len(ids) == len(set(ids)) == 562 and refusal in responses
            assert ctrl.pending() == 0
        finally:
            await ctrl.close()
            await worker.close()

    asyncio.run(asyncio.wait_for(main(), 30))
