"""At most one run of an operation at a time; callers that come while it runs share its result.

The front door's repository load rescans the workers' repositories when it is asked for a name
no worker serves; a burst of such loads (or one client looping over made-up names) must not pile
rescans up on the workers: each one lists, validates and may profile models.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """``await flight()`` runs ``operation`` unless a run is in flight already, and returns (or
    raises) what that run does. A caller that is cancelled stops waiting; the run goes on for
    the others."""

    def __init__(self, operation: Callable[[], Awaitable[T]]) -> None:
        self._operation = operation
        self._running: asyncio.Future[T] | None = None
        #: how many runs were started
        self.runs = 0

    @property
    def in_flight(self) -> bool:
        return self._running is not None

    async def __call__(self) -> T:
        running = self._running
        if running is None:
            running = self._running = asyncio.ensure_future(self._run())
            running.add_done_callback(_retrieve)
            self.runs += 1
        return await asyncio.shield(running)

    async def _run(self) -> T:
        try:
            return await self._operation()
        finally:
            self._running = None


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a run's exception retrieved: every caller may have stopped waiting for it."""
    if not fut.cancelled():
        fut.exception()


__all__ = ["SingleFlight"]
