"""Request bodies read straight into shared memory, for a decode process to read in place.

A body bound for the decode pool would otherwise be copied whole into the pipe to it by a
thread of this process, holding the interpreter (and the timed loop) for the copy: about a
millisecond per few MB. Read into a shared segment as it arrives (a copy of each network chunk,
as any read makes), it reaches the decode process as a name.
"""

from __future__ import annotations

from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory


class SharedBody:
    """``size`` bytes of shared memory (``view``); ``release`` once the decoding is done."""

    __slots__ = ("_released", "_shm", "name", "size", "view")

    def __init__(self, size: int) -> None:
        self._shm = SharedMemory(create=True, size=max(1, size))
        self.name = self._shm.name
        self.size = size
        buf = self._shm.buf
        assert buf is not None
        self.view: memoryview = buf[:size]
        self._released = False

    def __len__(self) -> int:
        return self.size

    def release(self) -> None:
        """Unmap and remove the segment (idempotent)."""
        if not self._released:
            self._released = True
            self.view.release()
            self._shm.close()
            self._shm.unlink()


class AttachedBody:
    """A ``SharedBody`` seen from the decode process: ``view`` until ``close``."""

    __slots__ = ("_shm", "view")

    def __init__(self, name: str, size: int) -> None:
        self._shm = SharedMemory(name=name)
        # attaching registers the segment with the resource tracker as if this process owned
        # it (CPython < 3.13), which would remove it when this process ends: the owner does
        resource_tracker.unregister(self._shm._name, "shared_memory")  # type: ignore[attr-defined]
        buf = self._shm.buf
        assert buf is not None
        self.view: memoryview = buf[:size]

    def close(self) -> None:
        """Unmap the segment; left to the garbage collector if something still views it (an
        error's traceback may: the owner removes the segment either way)."""
        try:
            self.view.release()
            self._shm.close()
        except BufferError:
            pass
