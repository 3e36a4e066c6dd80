"""glibc's thresholds pinned: large buffers freed go back to the system."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import sys
from clockwork.service.malloc_tuning import pin_malloc_thresholds
if sys.argv[1] == "pin":
    assert pin_malloc_thresholds()

def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

base = rss_kb()
first = bytearray(600_000)
del first  # a freed mmap raises glibc's threshold: later bodies this size come from the heap
bufs = [bytearray(b"x" * 600_000) for _ in range(300)]  # a flood's worth of bodies, held
last = bufs.pop()  # one still held, at the top of the heap
del bufs
print(rss_kb() - base)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_pinned_thresholds_give_freed_bodies_back() -> None:
    def grown_kb(mode: str) -> int:
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True
        )
        return int(out.stdout)

    pinned, unpinned = grown_kb("pin"), grown_kb("nopin")
    assert unpinned > 100_000, unpinned  # glibc's own way: the heap keeps what it held
    assert pinned < 20_000, pinned  # back near the baseline: 180 MB were held
