"""Whether this process may run a thread real-time (root, CAP_SYS_NICE or an RLIMIT_RTPRIO), found
by trying it on a throwaway thread: tests of the loop's priority expect what the host allows."""

from __future__ import annotations

import os
import threading


def may_run_realtime() -> bool:
    allowed: list[bool] = []

    def probe() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        except OSError:
            allowed.append(False)
        else:
            allowed.append(True)
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return allowed[0]


def policy_of(tid: int) -> int:
    """A thread's scheduling policy, without the reset-on-fork flag."""
    return os.sched_getscheduler(tid) & ~os.SCHED_RESET_ON_FORK
