"""How long a thread may keep the interpreter's lock from another thread that wants it.

CPython hands the lock over when the thread holding it has run for the switch interval (5 ms by
default) while another waits. Each of our processes has one thread whose waits are lateness:
the controller's timed loop (beside the decode pool's feeder and result threads) and the
worker's executor (beside the worker's event loop, which reads Infers and sends results). An
execution that ends on the executor thread needs the lock back to report, and at the default
interval it waited up to 5 ms for the event loop's thread: on a 2-core host serving 16 ONNX
models at 833 requests/s, the worker's measured executions had a p99 of 5.3-5.5 ms at batch 1
(median 1.6-1.7 ms), and 3.9-4.7 ms with this interval (BENCHMARKS.md s.39). A shorter interval
costs only when threads contend: a thread that waits for none is never asked to switch.
"""

from __future__ import annotations

import sys
from typing import Final

__all__ = ["SWITCH_INTERVAL_S", "bound_lock_waits"]

#: how long a thread may keep the lock from one that waits (CPython's default: 5 ms)
SWITCH_INTERVAL_S: Final = 0.0005


def bound_lock_waits() -> None:
    """Set this process's switch interval to ``SWITCH_INTERVAL_S``."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
