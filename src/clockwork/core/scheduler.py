"""The scheduler interface: events and the time in, actions and responses out.

A scheduler is a synchronous object with no I/O (h11's ``Connection`` for model serving). Drivers
(the asyncio controller service, the virtual-time simulator) call ``handle`` for each event and
``poll`` whenever they like; ``poll`` plans, and returns what to send, what to answer, and when the
scheduler next wants to be polled even if nothing happens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from clockwork.core.actions import Action
from clockwork.core.events import Event
from clockwork.core.requests import Response, ResponseStatus


# per-request value: Final fields and a written-out __init__, not frozen=True: a
# compiled-build accommodation (core/requests.py says why)
@dataclass(slots=True, init=False)
class SchedulerOutput:
    """Everything a scheduler decided since the last poll."""

    # actions to send now, in the order they were planned (read-only: a poll with nothing to say
    # may return the same empty output again)
    actions: Final[Sequence[Action]]
    # answers to give now; each request appears in exactly one response over a scheduler's life
    responses: Final[Sequence[Response]]
    # the scheduler wants ``poll`` again at this time even if no event arrives (None: no need)
    wake_at_ns: Final[int | None]

    def __init__(
        self,
        actions: Sequence[Action],
        responses: Sequence[Response],
        wake_at_ns: int | None = None,
    ) -> None:
        self.actions = actions
        self.responses = responses
        self.wake_at_ns = wake_at_ns


class Scheduler(Protocol):
    """One interface, several policies behind it (``clockwork``, ``reactive``)."""

    name: str

    def handle(self, event: Event, now_ns: int) -> None:
        """Take one event. Raises ``InvalidInputError`` for an event that cannot be taken (for
        example a duplicate request id); nothing is changed then."""
        ...

    def poll(self, now_ns: int) -> SchedulerOutput:
        """Plan up to the policy's horizon and drain what was decided."""
        ...

    def early_refusal(
        self, model: str, deadline_ns: int, now_ns: int, count: int = 1
    ) -> tuple[ResponseStatus, str] | None:
        """The refusal ``count`` requests of ``model`` due at ``deadline_ns`` (the samples of
        one call, refused together or not at all) would get at arrival now, where that is known
        without changing anything (None: queue them, or only taking them can tell): a front
        door asks before it decodes the request's inputs."""
        ...

    def pending_requests(self) -> int:
        """Requests accepted and not yet answered (for drivers' shutdown and tests)."""
        ...
