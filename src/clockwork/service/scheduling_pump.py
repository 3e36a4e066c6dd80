"""The timed loop: feed the scheduler its events, poll it, and carry out what it returns.

After every event, ``poll(now)``; each action goes to its worker's link (an ``Infer`` with the
inputs of its requests), except one whose ``latest_ns`` has already passed, which is answered at
once with a synthetic ``TOO_LATE`` result fed back to the scheduler (also checked again just
before the frame is written); responses resolve the requests' futures; a timer wakes the
scheduler at ``wake_at_ns``.

What this costs per request is the controller's capacity, so the hot path batches: events that
arrive in the same loop iteration are fed together and cost one poll; the actions of one poll
are written to each worker in one write, at once when its connection can take them without
waiting (else through the link's queue, whose sender drains it in batches); the wake-up timer is
re-armed only when the wake-up time changes, and never fires before it (uvloop's millisecond
timers otherwise fire up to 1.5 ms early, and each early wake-up cost a poll that found nothing
due). How late each planned wake-up ran (the timers' rounding included) is reported to
``on_wake_lateness``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from clockwork.core.actions import Action, ActionResult, ActionStatus, EvictWeights, Infer
from clockwork.core.errors import ClockworkError
from clockwork.core.events import ActionFinished, Event
from clockwork.core.requests import Response
from clockwork.core.scheduler import Scheduler
from clockwork.service.controller_stats import ControllerStats
from clockwork.service.observers import Observers
from clockwork.service.request_book import RequestBook
from clockwork.transport import (
    ConnectionClosedError,
    InferMsg,
    Message,
    ProtocolError,
    action_message,
)
from clockwork.transport.loop import timer_delay_s

log = logging.getLogger("clockwork.service.controller")


class Outlet(Protocol):
    """Where the actions for one joined worker go (a worker link while it is joined)."""

    def send_now(self, msgs: Sequence[Message]) -> Sequence[tuple[Message, ProtocolError]] | None:
        """Write ``msgs`` without waiting if the connection can take them now and nothing is
        queued before them; None (nothing sent) otherwise. ``ConnectionClosedError`` if the
        connection is closed."""
        ...

    def enqueue(self, msgs: Sequence[Message]) -> bool:
        """Queue ``msgs`` for the link's sender; False if the link has no session now."""
        ...

    @property
    def name(self) -> str: ...


class SchedulingPump:
    """Drives ``scheduler``; see the module docstring. ``outlets`` maps each joined worker to
    its outlet (kept up to date by the worker links)."""

    def __init__(
        self,
        scheduler: Scheduler,
        book: RequestBook,
        outlets: Mapping[str, Outlet],
        observers: Observers,
        stats: ControllerStats,
        clock_ns: Callable[[], int],
    ) -> None:
        self.scheduler = scheduler
        self._book = book
        self._outlets = outlets
        self._observers = observers
        self._stats = stats
        self._clock = clock_ns
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._wake: asyncio.TimerHandle | None = None
        self._wake_ns: int | None = None  # what ``_wake`` is armed for
        self._in_scheduler = False
        self._deferred: list[Event] = []
        # a ``run`` of the deferred events is scheduled for the end of this loop iteration
        self._run_soon = False
        # the messages of the actions dispatched by the current ``run``, per outlet: written at
        # its end, one write per outlet (or queued to the link's sender if that would wait)
        self._outbox: dict[Outlet, list[Message]] = {}

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def close(self) -> None:
        self._closed = True
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None

    @property
    def busy(self) -> bool:
        """Whether events wait to be fed (the caller may leave them to the pending run)."""
        return bool(self._deferred)

    def run_later(self, event: Event) -> None:
        """Feed ``event`` at the end of this loop iteration (or sooner, with any ``run``), so
        that the requests and results that arrive together cost one poll, not one each."""
        self._deferred.append(event)
        if not self._run_soon and self._loop is not None:
            self._run_soon = True
            self._loop.call_soon(self._run_deferred)

    def defer(self, event: Event) -> None:
        """Feed ``event`` with the next run, whenever that is (the caller runs one soon)."""
        self._deferred.append(event)

    def count_too_late(self) -> None:
        """An action found too late by a link's sender, just before its write."""
        self._stats.too_late_unsent += 1

    def _run_deferred(self) -> None:
        self._run_soon = False
        if self._deferred:  # else a ``run`` since took them
            self.run()

    def run(self, event: Event | None = None) -> None:
        """Feed ``event``, poll, and act on the output, until no synthetic event is left."""
        if event is not None:
            self._deferred.append(event)
        if self._in_scheduler:  # re-entered from a response callback: the outer loop goes on
            return
        self._in_scheduler = True
        try:
            while True:
                now = self._clock()
                events, self._deferred = self._deferred, []
                hook = self._observers.on_action_result
                for ev in events:
                    if hook is not None and type(ev) is ActionFinished:
                        try:
                            hook(ev.result, now)
                        except Exception:
                            log.exception("telemetry hook %r raised", hook)
                    try:
                        self.scheduler.handle(ev, now)
                    except ClockworkError as e:
                        log.error("scheduler refused %s: %s", type(ev).__name__, e)
                out = self.scheduler.poll(now)
                for action in out.actions:
                    self._dispatch(action, now)
                for response in out.responses:
                    self._respond(response)
                self._set_wake(out.wake_at_ns, now)
                if not self._deferred:
                    break
        finally:
            self._in_scheduler = False
        if self._outbox:
            self._flush_outbox()

    # ----------------------------------------------------------------- carrying out

    def _dispatch(self, action: Action, now: int) -> None:
        hook = self._observers.on_action_sent
        if hook is not None:
            try:
                hook(action, now)
            except Exception:
                log.exception("telemetry hook %r raised", hook)
        worker = action.device.worker
        if not isinstance(action, EvictWeights) and action.latest_ns < now:
            self._stats.too_late_unsent += 1
            self._deferred.append(ActionFinished(too_late(action, now)))
            return
        outlet = self._outlets.get(worker)
        if outlet is None:
            # the scheduler learns of the loss from the link, which requeues this action
            log.debug("action %d for %s not sent: worker not connected", action.action_id, worker)
            return
        msg: Message
        if type(action) is Infer:
            msg = InferMsg(0, action, self._book.sending(action, worker))
        else:
            msg = action_message(action)
        msgs = self._outbox.get(outlet)
        if msgs is None:
            self._outbox[outlet] = [msg]
        else:
            msgs.append(msg)

    def _flush_outbox(self) -> None:
        """Send what ``_dispatch`` put in the outbox: at once where the connection can take it
        without waiting and nothing is queued before it (which keeps each link's order), else
        through the link's queue and sender task."""
        outbox, self._outbox = self._outbox, {}
        for outlet, msgs in outbox.items():
            try:
                failed = outlet.send_now(msgs)
            except ConnectionClosedError:
                continue  # the link sees the connection closed and reports the loss
            if failed is not None:
                self.sent(outlet.name, msgs, failed)
                continue
            outlet.enqueue(msgs)  # lost since, if it cannot: the link reports that

    def sent(
        self,
        name: str,
        msgs: Sequence[Message],
        failed: Sequence[tuple[Message, ProtocolError]],
    ) -> None:
        """Count the actions among ``msgs`` that were sent; fail those that could not be."""
        unsent: set[int] = set()
        for msg, e in failed:
            unsent.add(id(msg))
            log.error("%s: could not send %s: %s", name, type(msg).__name__, e)
            action = getattr(msg, "action", None)
            if action is not None:
                now = self._clock()
                self.run(
                    ActionFinished(
                        ActionResult(
                            action.action_id,
                            action.device,
                            action.model,
                            ActionStatus.INVALID_INPUT,
                            now,
                            now,
                            now,
                            detail=str(e),
                        )
                    )
                )
        counts = self._stats.actions_sent
        for msg in msgs:
            action = getattr(msg, "action", None)
            if action is not None and id(msg) not in unsent:
                counts[type(action).__name__] += 1

    def answer(self, response: Response) -> None:
        """Give ``response`` now, as if the scheduler had (a refusal decided before the request
        reached it: ``ControllerService.refuse_early``)."""
        self._respond(response)

    def _respond(self, response: Response) -> None:
        self._stats.responses[response.status] += 1
        self._book.answer(response)
        hook = self._observers.on_response
        if hook is not None:
            try:
                hook(response)
            except Exception:
                log.exception("on_response raised")

    # ----------------------------------------------------------------- the wake-up timer

    def _set_wake(self, wake_ns: int | None, now: int) -> None:
        if self._wake is not None:
            if wake_ns == self._wake_ns:
                return  # the timer is armed for it already: no need to make a new one
            self._wake.cancel()
            self._wake = None
        self._wake_ns = wake_ns
        if wake_ns is None or self._loop is None or self._closed:
            return
        self._wake = self._loop.call_later(timer_delay_s(self._loop, wake_ns - now), self._on_wake)

    def _on_wake(self) -> None:
        self._wake = None
        wake_ns = self._wake_ns
        if wake_ns is not None and self._loop is not None and not self._closed:
            late_ns = self._clock() - wake_ns
            if late_ns < 0:
                # fired before it is due after all: a poll now would find nothing to do and
                # ask for this same wake-up again (with timers that fire early, a busy loop of
                # polls until it is due); wait for the rest instead
                self._wake = self._loop.call_later(
                    timer_delay_s(self._loop, -late_ns), self._on_wake
                )
                return
            self._observers.notify("on_wake_lateness", late_ns)
        self.run()


def too_late(action: Action, now: int) -> ActionResult:
    """The synthetic result of an action whose window passed before it could be sent."""
    return ActionResult(
        action.action_id,
        action.device,
        action.model,
        ActionStatus.TOO_LATE,
        now,
        now,
        now,
        detail="window passed before the action was sent",
    )
