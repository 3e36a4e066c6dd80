"""The controller's observers: telemetry that watches requests, actions, workers and the loop.

An observer is any object with some of the hook methods below; ``Observers.add`` installs the
ones it has after those already there. Each hook slot holds one callable (or None), so that the
hot path costs one attribute read and one call when a single observer listens. What a hook
raises is logged and ignored: telemetry never breaks serving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from clockwork.core.actions import Action, ActionResult
from clockwork.core.events import DeviceInfo
from clockwork.core.requests import InferRequest, Response

log = logging.getLogger("clockwork.service.controller")

#: every hook an observer may have, with its arguments
HOOKS = (
    "on_request",  # (InferRequest): each request as accepted
    "on_response",  # (Response): each answer
    "on_action_sent",  # (Action, now_ns): each action as the scheduler emitted it
    "on_action_result",  # (ActionResult, now_ns): each result fed back to the scheduler
    "on_worker_joined",  # (worker, devices)
    "on_worker_lost",  # (worker)
    "on_loop_lateness",  # (lateness_ns): how late the timed loop ran its heartbeat
    "on_wake_lateness",  # (lateness_ns): how late the scheduler's planned wake-up ran
)


class Observer(Protocol):
    """The hooks most observers have (the others are optional)."""

    def on_request(self, request: InferRequest) -> None: ...

    def on_response(self, response: Response) -> None: ...

    def on_action_sent(self, action: Action, now_ns: int) -> None: ...

    def on_action_result(self, result: ActionResult, now_ns: int) -> None: ...


class Observers:
    """One slot per hook, each None or a callable that calls every observer's hook in turn."""

    __slots__ = HOOKS

    def __init__(self) -> None:
        self.on_request: Callable[[InferRequest], None] | None = None
        self.on_response: Callable[[Response], None] | None = None
        self.on_action_sent: Callable[[Action, int], None] | None = None
        self.on_action_result: Callable[[ActionResult, int], None] | None = None
        self.on_worker_joined: Callable[[str, tuple[DeviceInfo, ...]], None] | None = None
        self.on_worker_lost: Callable[[str], None] | None = None
        self.on_loop_lateness: Callable[[int], None] | None = None
        self.on_wake_lateness: Callable[[int], None] | None = None

    def add(self, observer: object) -> None:
        """Install each hook ``observer`` has, called after the ones already installed."""
        for hook in HOOKS:
            new = getattr(observer, hook, None)
            if new is not None:
                self.add_hook(hook, new)

    def add_hook(self, hook: str, fn: Callable[..., None]) -> None:
        if hook not in HOOKS:
            raise ValueError(f"no hook {hook!r}; hooks: {', '.join(HOOKS)}")
        previous: Callable[..., None] | None = getattr(self, hook)
        setattr(self, hook, fn if previous is None else _chain(previous, fn))

    def notify(self, hook: str, *args: object) -> None:
        """Call ``hook`` (off the hot path: the hot path calls the slot itself)."""
        fn: Callable[..., None] | None = getattr(self, hook)
        if fn is not None:
            call(fn, *args)


def call(fn: Callable[..., None], *args: object) -> None:
    """Call a hook; what it raises is logged, never propagated."""
    try:
        fn(*args)
    except Exception:
        log.exception("telemetry hook %r raised", fn)


def _chain(first: Callable[..., None], second: Callable[..., None]) -> Callable[..., None]:
    def both(*args: Any) -> None:
        # the second still hears of the event when the first fails
        call(first, *args)
        second(*args)

    return both


def attach_observer(service: Any, observer: object) -> None:
    """Install ``observer``'s hooks on ``service`` (a ``ControllerService``) after those there."""
    service.observers.add(observer)
