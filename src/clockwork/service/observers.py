"""Several observers on one controller: each hook of ``ControllerService`` calls them in turn."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from clockwork.core.actions import Action, ActionResult
from clockwork.core.requests import InferRequest, Response

if TYPE_CHECKING:
    from clockwork.service.controller_service import ControllerService

_HOOKS = ("on_request", "on_response", "on_action_sent", "on_action_result")
#: hooks an observer may leave out
_OPTIONAL_HOOKS = ("on_worker_joined", "on_worker_lost")


class Observer(Protocol):
    def on_request(self, request: InferRequest) -> None: ...

    def on_response(self, response: Response) -> None: ...

    def on_action_sent(self, action: Action, now_ns: int) -> None: ...

    def on_action_result(self, result: ActionResult, now_ns: int) -> None: ...


def attach_observer(service: ControllerService, observer: Observer) -> None:
    """Install ``observer``'s hooks on ``service`` after the ones already there (which keep
    being called first); ``on_worker_joined(worker, devices)`` and ``on_worker_lost(worker)``
    too where the observer has them."""
    for hook in (*_HOOKS, *(h for h in _OPTIONAL_HOOKS if hasattr(observer, h))):
        new: Callable[..., None] = getattr(observer, hook)
        previous: Callable[..., None] | None = getattr(service, hook, None)
        setattr(service, hook, new if previous is None else _chain(previous, new))


def _chain(first: Callable[..., None], second: Callable[..., None]) -> Callable[..., None]:
    def both(*args: Any) -> None:
        first(*args)
        second(*args)

    return both
