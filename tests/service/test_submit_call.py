"""A client call of several samples (``ControllerService.submit_call``) over in-memory links:
answered when all its samples are, or at its first refusal, its other samples withdrawn."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

import pytest

from clockwork.core.actions import Action, Infer
from clockwork.core.policies import ClockworkConfig, ClockworkPolicy, make_policy
from clockwork.core.policies.base import PendingRequest, PolicyBase
from clockwork.core.requests import Response, ResponseStatus
from clockwork.service import ControllerService
from clockwork.service.controller_service import ControllerClosedError
from clockwork.service.memory_network import MemoryNetwork
from clockwork.service.request_book import Answer

from support.memory_cluster import controller, run, worker
from support.units import MS


class Seen:
    """The controller's responses and the request ids of the Infers it sent."""

    def __init__(self, ctrl: ControllerService) -> None:
        self.responses: dict[int, Response] = {}
        self.ran: set[int] = set()
        ctrl.observers.on_response = self.on_response
        ctrl.observers.on_action_sent = self.on_action_sent

    def on_response(self, response: Response) -> None:
        assert response.request_id not in self.responses, "answered twice"
        self.responses[response.request_id] = response

    def on_action_sent(self, action: Action, now_ns: int) -> None:
        if type(action) is Infer:
            self.ran.update(action.request_ids)

    def withdrawn(self) -> set[int]:
        return {rid for rid, r in self.responses.items() if r.status is ResponseStatus.WITHDRAWN}


@contextlib.asynccontextmanager
async def one_worker(
    policy: PolicyBase | None = None,
) -> AsyncIterator[tuple[ControllerService, str, Seen]]:
    """A controller with ``policy`` (default: the serving one, whose short horizon keeps the
    samples behind a running batch queued) and one emulated worker; its first model loaded and
    measured. Yields the controller, that model and what it answers and sends from then on."""
    net = MemoryNetwork()
    a = worker("a")
    net.plug("mem", 1, a)
    ctrl = controller(
        net,
        1,
        policy=policy or make_policy("clockwork", backlog_admission=True, admission_level=0.99),
    )
    await ctrl.start()
    try:
        await ctrl.wait_workers(1)
        model = sorted(ctrl.models)[0]
        await ctrl.submit(model, timeout_ns=1000 * MS)
        yield ctrl, model, Seen(ctrl)
    finally:
        await ctrl.close()
        await a.close()


async def keep_busy(
    ctrl: ControllerService, model: str, seen: Seen
) -> asyncio.Future[list[Answer]]:
    """A call of 16 samples, sent to the device (a batch of 16: 17 ms)."""
    busy = asyncio.ensure_future(ctrl.submit_call(model, [None] * 16, timeout_ns=1000 * MS))
    async with asyncio.timeout(5):
        while not seen.ran:
            await asyncio.sleep(0.001)
    return busy


async def settle(ctrl: ControllerService) -> None:
    async with asyncio.timeout(5):
        while ctrl.pending():
            await asyncio.sleep(0.005)


def test_a_call_is_answered_when_all_its_samples_are_in_order() -> None:
    async def main() -> None:
        async with one_worker() as (ctrl, model, _):
            answers = await ctrl.submit_call(model, [None] * 5, timeout_ns=1000 * MS)
            assert [r.status for r, _ in answers] == [ResponseStatus.SUCCESS] * 5
            ids = [r.request_id for r, _ in answers]
            assert ids == sorted(ids) and len(set(ids)) == 5

    run(main())


def test_a_call_the_backlog_cannot_serve_is_refused_whole_at_arrival() -> None:
    async def main() -> None:
        async with one_worker() as (ctrl, model, seen):
            busy = await keep_busy(ctrl, model, seen)
            # 64 samples due in 60 ms behind the busy batch: a few batches fit, not 64
            answers = await ctrl.submit_call(model, [None] * 64, timeout_ns=60 * MS)
            assert len(answers) == 1
            refusal = answers[0][0]
            assert refusal.status is ResponseStatus.OVERLOADED
            assert "its 64 samples" in refusal.detail
            await busy
            await settle(ctrl)
            refused = [r for r in seen.responses.values() if r.detail == refusal.detail]
            # every sample answered with the call's refusal, none queued, none run
            assert len(refused) == 64 and not {r.request_id for r in refused} & seen.ran
            # a call the backlog can take is taken
            answers = await ctrl.submit_call(model, [None] * 8, timeout_ns=60 * MS)
            assert [r.status for r, _ in answers] == [ResponseStatus.SUCCESS] * 8

    run(main())


class RefusesOne(ClockworkPolicy):
    """The serving policy, but the ``n``-th request to arrive once armed is refused at arrival
    (a sample refused while its call's others are taken, as a deadline or a lost worker can)."""

    def __init__(self) -> None:
        super().__init__(ClockworkConfig(backlog_admission=True))
        self.countdown = 0

    def accept(self, p: PendingRequest, now_ns: int) -> None:
        if self.countdown:
            self.countdown -= 1
            if not self.countdown:
                self.respond(p, ResponseStatus.OVERLOADED, now_ns, "refused by the test")
                return
        super().accept(p, now_ns)


def test_a_sample_refused_after_others_were_taken_ends_its_call_and_withdraws_them() -> None:
    async def main() -> None:
        policy = RefusesOne()
        async with one_worker(policy) as (ctrl, model, seen):
            busy = await keep_busy(ctrl, model, seen)
            policy.countdown = 6  # the call's 6th sample
            answers = await ctrl.submit_call(model, [None] * 8, timeout_ns=1000 * MS)
            assert [(r.status, r.detail) for r, _ in answers] == [
                (ResponseStatus.OVERLOADED, "refused by the test")
            ]
            await busy
            await settle(ctrl)
            withdrawn = seen.withdrawn()
            # the 7 others waited behind the busy batch: none of them runs
            assert len(withdrawn) == 7 and not withdrawn & seen.ran
            assert {seen.responses[rid].detail for rid in withdrawn} == {
                "another sample of its call was refused (OVERLOADED)"
            }

    run(main())


def test_a_call_whose_caller_stops_waiting_withdraws_its_queued_samples() -> None:
    async def main() -> None:
        async with one_worker() as (ctrl, model, seen):
            busy = await keep_busy(ctrl, model, seen)
            waiting = asyncio.ensure_future(
                ctrl.submit_call(model, [None] * 3, timeout_ns=1000 * MS)
            )
            await asyncio.sleep(0.001)
            waiting.cancel()
            await busy
            await settle(ctrl)
            withdrawn = seen.withdrawn()
            assert len(withdrawn) == 3 and not withdrawn & seen.ran
            assert {seen.responses[rid].detail for rid in withdrawn} == {
                "its caller stopped waiting"
            }

    run(main())


def test_a_call_waiting_when_the_controller_closes_fails_once_and_leaves_no_stray_error() -> None:
    async def main() -> None:
        stray: list[dict[str, object]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: stray.append(ctx))
        async with one_worker() as (ctrl, model, seen):
            busy = await keep_busy(ctrl, model, seen)
            waiting = asyncio.ensure_future(
                ctrl.submit_call(model, [None] * 3, timeout_ns=1000 * MS)
            )
            await asyncio.sleep(0.001)
            await ctrl.close()
            with pytest.raises(ControllerClosedError):
                await waiting
            with contextlib.suppress(ControllerClosedError):
                await busy
        gc.collect()
        await asyncio.sleep(0)
        # every sample's failure was taken by the call, not left for the garbage collector
        assert not [c for c in stray if "never retrieved" in str(c.get("message"))]

    run(main())
