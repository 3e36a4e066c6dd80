"""Shared-memory segments that hold request inputs, and where each live one is mapped here.

A large input is written once into a segment (by the front door as its body arrives, or by a
decode process as it decodes), and from then on travels as a name: to the controller's loop, which
sees only offsets, dtypes and shapes, and to a worker on the same host, which maps the segment
instead of receiving the bytes. The segment's name lives as long as its mapping in the owner's
process (the process whose front door took the request): while the request's handler holds it
(until ``Segment.release``) and while any array viewing it does (the controller holds each
request's inputs until the request is answered or refused; a batch of samples from one body is
answered sample by sample). When the last view goes, the name is removed and the memory goes
back to the system; a worker that maps the segment later finds it gone and fails that action
(its requests were answered already). A segment left behind by a process that died is removed
by multiprocessing's resource tracker, which every segment is registered with while its name
exists.

``locate`` says which live segment of this process an array lies in, and where: what lets the
transport send a reference instead of the data (``codec``) without anyone passing it along.
"""

from __future__ import annotations

import _posixshmem  # type: ignore[import-not-found]
import atexit
import bisect
import contextlib
import errno
import mmap
import os
import queue
import re
import secrets
import threading
import weakref
from multiprocessing import resource_tracker

import numpy as np
import numpy.typing as npt

#: where POSIX shared memory lives (Linux)
SHM_DIR = "/dev/shm"
#: room left free there, for everything else that uses it
ROOM_MARGIN_BYTES = 64 * 1024 * 1024
#: every segment's name: a worker maps no other
PREFIX = "cw_in_"
NAME_RE = re.compile(r"cw_in_[0-9a-f]{16}")

# reentrant: a mapping's finalizer (``_Mapping.gone``) runs wherever the interpreter frees the
# mapping or collects garbage, which may be inside a section that holds this lock on the same
# thread; a plain lock would deadlock there
_lock = threading.RLock()
# live segments mapped in this process: start address -> (end address, name), and the starts
# sorted for ``locate``
_by_start: dict[int, tuple[int, str]] = {}
_starts: list[int] = []
# names created or adopted here and not removed yet (what ``live_segments`` counts)
_owned: set[str] = set()


def _address(buf: memoryview) -> int:
    return int(np.frombuffer(buf, dtype=np.uint8).__array_interface__["data"][0])


class _Mapping:
    """What is done when a segment's mapping goes: forget it here and, unless it was handed
    over to another process, remove its name."""

    __slots__ = ("name", "remove", "start")

    def __init__(self, name: str, start: int) -> None:
        self.name = name
        self.start = start
        self.remove = True

    def forget(self) -> None:
        with _lock:
            _owned.discard(self.name)
            entry = _by_start.get(self.start)
            if entry is not None and entry[1] == self.name:
                del _by_start[self.start]
                del _starts[bisect.bisect_left(_starts, self.start)]

    def gone(self) -> None:
        self.forget()
        if self.remove:
            self.remove = False
            unlink_later(self.name)


# Names to remove, removed off the timed loop by the reaper thread. A finalizer asks for a
# removal, so asking takes no lock: ``SimpleQueue.put`` is safe to call from a finalizer, where
# an executor's ``submit`` (all of them share one module lock in ``concurrent.futures``) could
# find that lock held by the very thread the finalizer interrupted, and hang it (seen in a test
# run: a finalizer inside another executor's ``submit``).
class _Reaper:
    """The reaper thread and its queue of names to remove (and events to set once the names
    before them are removed)."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[str | threading.Event | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.start_lock = threading.Lock()  # taken by ordinary code only, never in a finalizer
        self.exiting = False

    def run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
            else:
                unlink(item)

    def ensure(self) -> None:
        """Start the thread (again, in a forked child) where none runs. Called where a segment
        is made, so that it runs before any finalizer can ask for a removal."""
        if self.thread is not None and self.thread.is_alive():
            return
        with self.start_lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self.run, name="shm-reaper", daemon=True)
                self.thread.start()

    def finish(self) -> None:
        """At exit: the removals asked for are done before the daemon thread is stopped; those
        asked for later (finalizers at the very end) are done where they are asked."""
        if self.thread is not None and self.thread.is_alive():
            with contextlib.suppress(TimeoutError):
                removals_done(5.0)
            self.queue.put(None)
        self.exiting = True
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, str):
                unlink(item)


_reaper = _Reaper()
atexit.register(_reaper.finish)


def unlink_later(name: str) -> None:
    """``unlink(name)`` on a thread of its own: removing the last reference to a segment frees
    its pages, milliseconds for a few MB (12 ms for 9 MiB on a busy 2-core machine), which the
    timed loop must not wait out (the call lets go of the interpreter meanwhile)."""
    if _reaper.exiting:  # the reaper has stopped: nothing would take it
        unlink(name)
        return
    _reaper.queue.put(name)


def removals_done(timeout_s: float = 10.0) -> None:
    """Wait until the removals asked for so far are done (tests, and a clean exit)."""
    _reaper.ensure()
    done = threading.Event()
    _reaper.queue.put(done)
    if not done.wait(timeout_s):
        raise TimeoutError(f"segment removals not done within {timeout_s} s")


def unlink(name: str) -> None:
    """Remove segment ``name`` (gone already: nothing to do)."""
    try:
        _posixshmem.shm_unlink("/" + name)
    except FileNotFoundError:
        return
    resource_tracker.unregister("/" + name, "shared_memory")


class Segment:
    """A segment mapped read-write: ``create`` a new one or ``adopt`` one a decode process made
    for this process to own. ``view`` is its memory until ``release``; the name is removed when
    the mapping goes (the last view of it: see the module docstring)."""

    __slots__ = ("_mapping", "name", "size", "view")

    def __init__(self, name: str, size: int, *, create: bool) -> None:
        if create:
            self.room_for(size)
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = _posixshmem.shm_open("/" + name, flags, mode=0o600)
        try:
            if create:
                os.ftruncate(fd, max(1, size))
            elif os.fstat(fd).st_size < size:
                raise ValueError(f"shared segment {name} is smaller than {size} bytes")
            mapped = mmap.mmap(fd, max(1, size))
        finally:
            os.close(fd)
        if create:
            resource_tracker.register("/" + name, "shared_memory")
        self.name = name
        self.size = size
        self.view: memoryview = memoryview(mapped)[:size]
        start = _address(memoryview(mapped))
        self._mapping = _Mapping(name, start)
        _reaper.ensure()
        with _lock:
            _owned.add(name)
            if start not in _by_start:
                bisect.insort(_starts, start)
            # ``forget`` removes an entry only under its own name: it cannot take this one
            _by_start[start] = (start + max(1, size), name)
        # ``mmap`` unmaps when freed, once no view of it is left
        weakref.finalize(mapped, self._mapping.gone)

    @classmethod
    def create(cls, size: int) -> Segment:
        return cls(PREFIX + secrets.token_hex(8), size, create=True)

    @staticmethod
    def room_for(size: int) -> None:
        """``OSError`` (ENOSPC) unless the segments' file system has room for ``size`` more
        bytes and a margin: a write into a mapped segment past its room kills the process
        (SIGBUS), where this is an error the caller can take another way round."""
        st = os.statvfs(SHM_DIR)
        free = st.f_bavail * st.f_frsize
        if free < size + ROOM_MARGIN_BYTES:
            raise OSError(
                errno.ENOSPC, f"{SHM_DIR} has {free} bytes free; {size} more would not fit"
            )

    @classmethod
    def adopt(cls, name: str, size: int) -> Segment:
        """A segment another process of ours created for this one, which owns it from now."""
        if not NAME_RE.fullmatch(name):
            raise ValueError(f"{name!r} is not the name of an input segment")
        return cls(name, size, create=False)

    def __len__(self) -> int:
        return self.size

    def handed_over(self) -> None:
        """Made here for another process to own (a decode process's output): forget it here
        without removing it."""
        self._mapping.remove = False
        self._mapping.forget()
        self.view = memoryview(b"")

    def release(self) -> None:
        """The holder is done with it (idempotent): the name goes with the last view."""
        self.view = memoryview(b"")


def live_segments() -> int:
    """Segments this process created or adopted and has not released."""
    return len(_owned)


def locate(array: npt.NDArray[np.generic]) -> tuple[str, int] | None:
    """``(segment name, offset)`` of a C-contiguous ``array`` lying in a live segment of this
    process, else None."""
    if not _starts or not array.flags.c_contiguous or not array.nbytes:
        return None
    address = int(array.__array_interface__["data"][0])
    with _lock:
        i = bisect.bisect_right(_starts, address) - 1
        if i < 0:
            return None
        start = _starts[i]
        entry = _by_start.get(start)
    if entry is None:
        return None
    end, name = entry
    if address + array.nbytes > end:
        return None
    return name, address - start


def map_readonly(name: str) -> memoryview:
    """A read-only view of the whole segment ``name`` (a worker's side). ``ValueError`` for a
    name that is not an input segment's, ``FileNotFoundError`` for one already removed."""
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"{name!r} is not the name of an input segment")
    fd = _posixshmem.shm_open("/" + name, os.O_RDONLY, mode=0o600)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            raise ValueError(f"shared segment {name} is empty")
        mapped = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
    return memoryview(mapped)
