"""The gRPC door's test for a standing queue in front of the loop (``queue_delay``'s rule).

HTTP measures each request's wait from its first byte to the door. gRPC has no such time for
Python: core reads the request on its own threads, the call's arrival time is not exposed, and the
client's ``grpc-timeout`` is turned into an absolute deadline and dropped from the metadata (and
many clients send none). What a gRPC call waits for once core has it is the loop: its start is a
completion handled by a callback on the loop, behind every callback ready before it, so under a
standing queue it waits as long as any callback due then. That wait is measured by ``LoopLag``:
a timer every ``interval_ns`` that records how late it ran, armed only while gRPC inference
arrives (idle, it costs nothing). Each inference call is taken to have waited the last lateness
measured, and ``QueueDelayGate`` refuses it, before its request is decoded, once every call for
``queue_delay_interval_s`` has waited ``queue_delay_target_s`` (``RESOURCE_EXHAUSTED``, reason
``QUEUE_DELAY``, as HTTP's 503). It does not see a queue inside core (calls core holds while
gRPC's ``maximum_concurrent_rpcs`` is reached): the door's in-flight caps, below it, refuse first.
"""

from __future__ import annotations

import asyncio
import time

from clockwork.core.units import NS_PER_S
from clockwork.transport.loop import LoopLateness

__all__ = ["DEFAULT_INTERVAL_NS", "LoopLag"]

DEFAULT_INTERVAL_NS = 10_000_000
# the timer stops after this long without a call asking for the lateness
_IDLE_NS = NS_PER_S


class LoopLag:
    """How late the running loop runs a timer due every ``interval_ns``, measured while asked."""

    __slots__ = ("_asked_ns", "_late_ns", "_timer")

    def __init__(self, interval_ns: int = DEFAULT_INTERVAL_NS) -> None:
        self._timer = LoopLateness(self._beat, interval_ns)
        self._late_ns = 0
        self._asked_ns = 0

    def late_ns(self) -> int:
        """The last lateness measured (0 before the first, or after an idle second); keeps the
        timer going. Call on the loop."""
        self._asked_ns = time.monotonic_ns()
        if not self._timer.running:
            self._timer.start(asyncio.get_running_loop())
        return self._late_ns

    def stop(self) -> None:
        self._timer.stop()
        self._late_ns = 0

    def _beat(self, late_ns: int) -> None:
        self._late_ns = late_ns
        if time.monotonic_ns() - self._asked_ns > _IDLE_NS:
            self.stop()
