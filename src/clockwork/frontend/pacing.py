"""Long work kept off the timed loop: copies cut into bounded steps, renders on a thread.

A request body that arrived while its handler waited is all in aiohttp's buffer: reading it
into one buffer would copy (and fault in) megabytes in one step of the loop, a step nothing else
runs during (9 MiB: 5-9 ms of CPU on a busy 2-core machine). ``Pacer`` gives the loop back once
``step_bytes`` were copied in a turn of the loop. The budget is the loop's, not the request's:
every request ready in a turn runs in that turn before the loop looks at its timers, so four
bodies each copying its own 256 KiB held a timer 3-6 ms (the JSON bomb's late heartbeats),
where one budget for all of them holds it for one step.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: the most bytes copied in one turn of the loop: into fresh shared memory, page faults and
#: memcpy cost about 1.5 ms per MiB on a busy 2-core machine (bench/loop_profile.py --cprofile),
#: and up to 1.56 ms for 256 KiB measured there since; a turn also holds the sockets' reads
#: (up to 0.76 ms each), so with four 9 MiB bodies at once 256 KiB steps left the loop late
#: 3-5 ms at p99 and 128 KiB steps 1.5-2 ms (BENCHMARKS.md s.37)
DEFAULT_STEP_BYTES = 128 * 1024


class TurnBudget:
    """Bytes copied during the current turn of one loop, by every ``Pacer`` on it."""

    # no reference to its loop: the loop is the key of a weak dictionary holding the budget
    __slots__ = ("_reset_due", "spent")

    def __init__(self) -> None:
        self.spent = 0
        self._reset_due = False

    async def take(self, size_bytes: int, step_bytes: int) -> None:
        """Count ``size_bytes`` copied; while this turn's ``step_bytes`` are spent, wait for
        the next turn. The first copy of a turn schedules the renewal, which then runs before
        every copier that waits: what is counted is this turn's, not what small copies left
        over several turns."""
        if not self._reset_due:
            self._reset_due = True
            asyncio.get_running_loop().call_soon(self._renew)
        self.spent += size_bytes
        while self.spent >= step_bytes:
            await asyncio.sleep(0)

    def _renew(self) -> None:
        self.spent = 0
        self._reset_due = False


# one budget per loop (the HTTP and the gRPC door share it); a closed loop takes its own along
_BUDGETS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TurnBudget] = (
    weakref.WeakKeyDictionary()
)


def turn_budget(loop: asyncio.AbstractEventLoop) -> TurnBudget:
    """The budget of ``loop``'s turns."""
    budget = _BUDGETS.get(loop)
    if budget is None:
        budget = _BUDGETS[loop] = TurnBudget()
    return budget


class Pacer:
    """One copy's side of its loop's ``TurnBudget``: ``copied`` yields to the loop once the
    turn's ``step_bytes`` are spent, by this copy or any other."""

    __slots__ = ("step_bytes",)

    def __init__(self, step_bytes: int = DEFAULT_STEP_BYTES) -> None:
        if step_bytes <= 0:
            raise ValueError(f"step_bytes must be > 0, got {step_bytes}")
        self.step_bytes = step_bytes

    async def copied(self, size_bytes: int) -> None:
        await turn_budget(asyncio.get_running_loop()).take(size_bytes, self.step_bytes)

    async def copy(self, dst: memoryview, at: int, src: bytes | bytearray | memoryview) -> None:
        """``dst[at:at + len(src)] = src``, a step at most per turn: a chunk that arrived
        whole (up to 256 KiB a read) is cut rather than copied in one go."""
        budget = turn_budget(asyncio.get_running_loop())
        whole = memoryview(src).cast("B")
        step = self.step_bytes
        for start in range(0, len(whole), step):
            piece = whole[start : start + step]
            dst[at + start : at + start + len(piece)] = piece
            await budget.take(len(piece), step)


async def on_a_thread(render: Callable[[], T]) -> T:
    """``render()`` on a thread, for work that reads the loop's state but changes nothing (the
    ``/metrics`` text: 2-8 ms of CPU per scrape on a busy 2-core machine, which would hold the
    loop that long in one step; on a thread, the interpreter's switch interval bounds how long
    the loop waits for it at a time). Should it meet a dict that the loop changed meanwhile
    (``RuntimeError``), it runs again on the loop."""
    try:
        return await asyncio.to_thread(render)
    except RuntimeError:
        return render()
