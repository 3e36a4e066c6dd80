"""The controller's hot path against a stub scheduler (no workers): polls coalesced per loop
iteration, the wake-up timer neither early nor spinning, every request answered exactly once."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

import pytest

from clockwork.core.actions import ActionResult, ActionStatus, Infer
from clockwork.core.events import ActionFinished, Event, RequestArrived
from clockwork.core.ids import DeviceId
from clockwork.core.requests import InferRequest, Response, ResponseStatus
from clockwork.core.scheduler import SchedulerOutput
from clockwork.service import ControllerService
from clockwork.transport import loop_factory

from support.units import MS


class StubScheduler:
    """Answers each request at the first poll after it arrived (if ``answer``), emits the
    actions put in ``actions``, and asks to be woken at ``wake_ns`` until it has passed."""

    name = "stub"

    def __init__(self, answer: bool = True) -> None:
        self.answer = answer
        self.events: list[Event] = []
        self.polls: list[int] = []
        self.wake_ns: int | None = None
        self.actions: list[Infer] = []
        self._waiting: list[InferRequest] = []

    def handle(self, event: Event, now_ns: int) -> None:
        self.events.append(event)
        if isinstance(event, RequestArrived) and self.answer:
            self._waiting.append(event.request)

    def poll(self, now_ns: int) -> SchedulerOutput:
        self.polls.append(now_ns)
        responses = [
            Response(r.request_id, r.model, ResponseStatus.SUCCESS, now_ns) for r in self._waiting
        ]
        self._waiting = []
        actions, self.actions = self.actions, []
        wake = self.wake_ns if self.wake_ns is not None and self.wake_ns > now_ns else None
        return SchedulerOutput(list(actions), responses, wake)

    def pending_requests(self) -> int:
        return len(self._waiting)

    def early_refusal(
        self, model: str, deadline_ns: int, now_ns: int, count: int = 1
    ) -> tuple[ResponseStatus, str] | None:
        return None


def run(coro: Coroutine[Any, Any, None], use_uvloop: bool) -> None:
    with asyncio.Runner(loop_factory=loop_factory(use_uvloop)) as runner:
        runner.run(asyncio.wait_for(coro, 10))


@pytest.mark.parametrize("use_uvloop", [False, True])
def test_requests_submitted_together_cost_one_poll_and_get_one_answer_each(
    use_uvloop: bool,
) -> None:
    async def main() -> None:
        stub = StubScheduler()
        service = ControllerService(stub, [])
        await service.start()
        futures = [service.submit_nowait(f"m{i}", timeout_ns=50 * MS) for i in range(5)]
        assert stub.polls == []  # fed at the end of this loop iteration, together
        answers = await asyncio.gather(*futures)
        assert len(stub.polls) == 1
        assert [type(e) for e in stub.events] == [RequestArrived] * 5
        assert [r.request_id for r, _ in answers] == list(range(5))
        assert all(r.status is ResponseStatus.SUCCESS and out is None for r, out in answers)
        # the coroutine form still works, and answers once
        response, _ = await service.submit("m", timeout_ns=50 * MS)
        assert response.request_id == 5
        assert service.stats.answered == service.stats.submitted == 6
        assert service.pending() == 0
        await service.close()

    run(main(), use_uvloop)


@pytest.mark.parametrize("use_uvloop", [False, True])
def test_the_wake_up_is_neither_early_nor_a_busy_loop_of_polls(use_uvloop: bool) -> None:
    async def main() -> None:
        stub = StubScheduler(answer=False)
        service = ControllerService(stub, [])
        await service.start()
        # not a whole number of milliseconds away: uvloop's timers count whole ms
        stub.wake_ns = wake = time.monotonic_ns() + 2_400_000
        answer = service.submit_nowait("m")
        await asyncio.sleep(0.03)
        first, *rest = stub.polls
        assert first < wake
        assert len(rest) == 1, [p - wake for p in stub.polls]  # one wake-up, one poll
        assert wake <= rest[0] < wake + 20 * MS
        await service.close()
        with pytest.raises(Exception, match="controller closed"):
            await answer

    run(main(), use_uvloop)


def test_an_action_whose_window_passed_is_answered_too_late_unsent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        stub = StubScheduler()
        seen: list[ActionResult] = []
        sent: list[int] = []

        def bad_hook(request: InferRequest) -> None:
            raise RuntimeError("telemetry bug")

        service = ControllerService(
            stub,
            [],
            on_request=bad_hook,
            on_action_sent=lambda action, now: sent.append(action.action_id),
            on_action_result=lambda result, now: seen.append(result),
        )
        await service.start()
        now = time.monotonic_ns()
        stub.actions = [Infer(7, DeviceId("w0", 0), "m", 1, (0,), now - 2 * MS, now - MS, MS)]
        response, _ = await service.submit("m", timeout_ns=50 * MS)
        assert response.status is ResponseStatus.SUCCESS  # the hook's error changed nothing
        assert sent == [7]
        assert [(r.action_id, r.status) for r in seen] == [(7, ActionStatus.TOO_LATE)]
        finished = [e for e in stub.events if isinstance(e, ActionFinished)]
        assert [e.result for e in finished] == seen
        assert service.stats.too_late_unsent == 1
        assert not service.stats.actions_sent
        await service.close()

    with caplog.at_level(logging.ERROR, logger="clockwork.service.controller"):
        run(main(), use_uvloop=True)
    assert any("telemetry hook" in r.getMessage() for r in caplog.records)
