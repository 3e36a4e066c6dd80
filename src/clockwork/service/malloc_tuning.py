"""glibc's allocator, told to give large buffers back to the system.

Request bodies and tensors are large (hundreds of KB to MBs) and short-lived. glibc serves such
an allocation with its own mmap, but raises that threshold each time one is freed (up to 32 MiB),
after which the same sizes come from the heap, which fragments and is rarely returned: after a
flood of 600 KB bodies the server's memory stayed 4x its baseline. Fixing the thresholds turns
that adjustment off, so that large buffers go back to the system when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

#: allocations at least this large get their own mapping (and are unmapped when freed)
MMAP_THRESHOLD_BYTES = 256 * 1024
#: free memory at the top of the heap beyond this goes back to the system
TRIM_THRESHOLD_BYTES = 4 * 2**20

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt  # noqa: B018 - glibc has it; musl does not
    except (OSError, AttributeError):
        return None
    return libc


def pin_malloc_thresholds() -> bool:
    """Fix glibc's mmap and trim thresholds (see the module docstring); False where there is
    no glibc (nothing changes)."""
    libc = _libc()
    if libc is None:
        return False
    ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    if not ok:
        log.debug("mallopt refused the thresholds")
    return ok


def trim() -> bool:
    """Give the heap's free memory back to the system now (after a burst)."""
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    return bool(libc.malloc_trim(0))
