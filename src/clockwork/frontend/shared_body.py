"""Request bodies read straight into shared memory, for a decode process to read in place.

A body bound for the decode pool would otherwise be copied whole into the pipe to it by a
thread of this process, holding the interpreter (and the timed loop) for the copy: about a
millisecond per few MB. Read into a shared segment as it arrives (a copy of each network chunk,
as any read makes), it reaches the decode process as a name. A binary body decoded in place is
read into one too: its inputs are views of the segment, which a worker on this host maps
instead of receiving the bytes (``transport.shared_segments``).
"""

from __future__ import annotations

import contextlib
import logging
import secrets

from clockwork.transport.shared_segments import PREFIX, Segment, map_readonly

log = logging.getLogger(__name__)


class SharedBody(Segment):
    """``size`` bytes of shared memory (``view``); ``release`` once the request is answered
    (or, for one decoded elsewhere, once it is decoded)."""

    __slots__ = ()

    def __init__(self, size: int) -> None:
        super().__init__(PREFIX + secrets.token_hex(8), size, create=True)


class AttachedBody:
    """A ``SharedBody`` seen from the decode process: ``view`` (read-only) until ``close``."""

    __slots__ = ("view",)

    def __init__(self, name: str, size: int) -> None:
        whole = map_readonly(name)
        if len(whole) < size:
            raise ValueError(f"shared body {name} is smaller than {size} bytes")
        self.view: memoryview = whole[:size]

    def close(self) -> None:
        """Let the mapping go; it stays while something still views it (an error's traceback
        may: the owner removes the segment either way)."""
        with contextlib.suppress(BufferError):
            self.view.release()


def body_buffer(size: int, shared: bool) -> bytearray | SharedBody:
    """A buffer for a body of ``size`` bytes: shared memory if ``shared`` and there is room
    for it, else (logged) ordinary memory."""
    if shared:
        try:
            return SharedBody(size)
        except OSError as e:
            log.warning("a request body goes to ordinary memory: %s", e)
    return bytearray(size)
