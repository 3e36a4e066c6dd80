"""Give freed heap memory back to the system after a large frame was refused.

glibc keeps freed memory for reuse, and after a large ``free`` it raises its mmap threshold so
that later large buffers come from the heap and stay there: a worker that refused one hostile
64 MiB frame would otherwise keep that much resident. ``malloc_trim(0)`` returns it. Elsewhere
(no glibc) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable

#: frames at least this long are followed by a trim when refused
TRIM_ABOVE_BYTES = 1 << 20


def _load() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    trim: Callable[[int], int] = fn
    return trim


_malloc_trim = _load()


def release_freed_memory() -> None:
    """Return the heap's free memory to the system (glibc ``malloc_trim``), if we can."""
    if _malloc_trim is not None:
        _malloc_trim(0)


__all__ = ["TRIM_ABOVE_BYTES", "release_freed_memory"]
