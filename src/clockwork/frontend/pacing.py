"""Long work kept off the timed loop: copies cut into bounded steps, renders on a thread.

A request body that arrived while its handler waited is all in aiohttp's buffer: reading it
into one buffer would copy (and fault in) megabytes in one step of the loop, a step nothing else
runs during (9 MiB: 5-9 ms of CPU on a busy 2-core machine). ``Pacer`` gives the loop back
after every ``step_bytes`` copied without a pause, so that one step copies at most about that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: the most bytes copied in one step of the loop: into fresh shared memory, page faults and
#: memcpy cost about 1.5 ms per MiB on a busy 2-core machine (bench/loop_profile.py --cprofile)
DEFAULT_STEP_BYTES = 256 * 1024


class Pacer:
    """Counts bytes copied since the loop last ran something else; ``copied`` yields to it
    once they reach ``step_bytes``."""

    __slots__ = ("_since", "step_bytes")

    def __init__(self, step_bytes: int = DEFAULT_STEP_BYTES) -> None:
        if step_bytes <= 0:
            raise ValueError(f"step_bytes must be > 0, got {step_bytes}")
        self.step_bytes = step_bytes
        self._since = 0

    async def copied(self, size_bytes: int) -> None:
        self._since += size_bytes
        if self._since >= self.step_bytes:
            self._since = 0
            await asyncio.sleep(0)


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
