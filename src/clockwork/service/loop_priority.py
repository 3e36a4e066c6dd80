"""The timed loop's CPU priority: the thread that runs the controller's event loop asks the kernel
for a real-time policy (``SCHED_FIFO``), so that a wake-up never waits behind a decode process,
a worker or a client for a core.

Why: on a host whose cores are all busy, a normal thread that wakes waits for the running one's
time slice to end, several milliseconds with Linux's default slices (section 18 of BENCHMARKS.md
measured the loop's own callbacks under 2 ms of CPU while its lateness p99 was 5-50 ms). A
``SCHED_FIFO`` thread preempts every normal one as soon as it is runnable. The loop sleeps in
``epoll`` between short callbacks, so what it takes from the others is what it uses; the kernel's
real-time throttling (95% of each second by default) bounds a runaway loop all the same.

Only the calling thread changes, and with ``SCHED_RESET_ON_FORK``: the threads and processes it
starts afterwards (decode processes, the local worker, executor threads) run at normal priority.
Raising a policy needs ``CAP_SYS_NICE`` or an ``RLIMIT_RTPRIO`` above zero; without it the
``auto`` choice keeps the normal policy and says why."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass

#: the lowest real-time priority: above every normal thread, below the kernel's own
REALTIME_PRIORITY = 1


class LoopPriority(enum.Enum):
    """What ``--loop-priority`` asks for."""

    AUTO = "auto"  # real-time where permitted, else normal (said in the banner)
    REALTIME = "realtime"  # real-time or a configuration error
    NORMAL = "normal"  # leave the scheduler's policy alone


@dataclass(frozen=True)
class PriorityOutcome:
    """What the loop's thread runs at, in words for the banner and the log."""

    realtime: bool
    detail: str


class LoopPriorityError(RuntimeError):
    """``realtime`` was asked for and the kernel refused it."""


def raise_loop_priority(choice: LoopPriority) -> PriorityOutcome:
    """Apply ``choice`` to the calling thread (call it on the loop's thread)."""
    if choice is LoopPriority.NORMAL:
        return PriorityOutcome(False, "normal priority (--loop-priority normal)")
    setter = getattr(os, "sched_setscheduler", None)
    if setter is None:  # not Linux
        return _refused(choice, "this platform has no sched_setscheduler")
    policy = os.SCHED_FIFO | getattr(os, "SCHED_RESET_ON_FORK", 0)
    try:
        setter(0, policy, os.sched_param(REALTIME_PRIORITY))
    except OSError as e:  # EPERM without CAP_SYS_NICE or an RLIMIT_RTPRIO
        return _refused(choice, f"SCHED_FIFO not permitted ({e.strerror or e})")
    return PriorityOutcome(True, f"SCHED_FIFO priority {REALTIME_PRIORITY} (real-time)")


def _refused(choice: LoopPriority, why: str) -> PriorityOutcome:
    if choice is LoopPriority.REALTIME:
        raise LoopPriorityError(
            f"--loop-priority realtime: {why}; grant CAP_SYS_NICE (or an RLIMIT_RTPRIO of 1 or "
            "more) or use --loop-priority auto"
        )
    return PriorityOutcome(False, f"normal priority: {why}")
