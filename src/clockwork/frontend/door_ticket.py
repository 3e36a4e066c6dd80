"""What serving an admitted request tells the door's limit (``adaptive_limit``) about it.

The door admits a request before anything of it is decoded; whether it then met its deadline is
known only once the server has judged it (its timeout, the scheduler's answer). The door puts a
``DoorTicket`` in the request's context (a ``ContextVar``: the protocol handler, which runs in the
same task as the door's middleware or interceptor, carries it to ``ModelServer.infer`` without
another argument on every layer between), the server fills it in, and the door reads it when the
request ends.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["TICKET", "DoorTicket"]


@dataclass(slots=True)
class DoorTicket:
    """One admitted request, as the door's limit sees it. Mutable: filled in as it is served."""

    #: perf_counter_ns when the request began (its first byte where known, else its admission)
    began_ns: int
    #: the request's timeout as the server read it; 0: not judged (refused as bad, say)
    timeout_ns: int = 0
    #: the scheduler refused it as overloaded, or answered it past its deadline
    failed: bool = False

    def met(self, now_ns: int) -> bool | None:
        """Whether it met its deadline, ending at ``now_ns``; None when it says nothing of the
        server's load (it was never judged)."""
        if self.timeout_ns == 0:
            return None
        return not self.failed and now_ns - self.began_ns <= self.timeout_ns


#: the ticket of the request being served in this task, if the door issued one
TICKET: ContextVar[DoorTicket | None] = ContextVar("clockwork_door_ticket", default=None)
