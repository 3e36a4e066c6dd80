"""How long this process ran and how long it waited, runnable, for a core (Linux's per-thread
``schedstat``: nanoseconds on a CPU, nanoseconds on a run queue, timeslices).

A load generator on the host it measures shares the cores with the server: on this project's
2-core machine, ``clockwork bench`` at 666 requests/s beside ``clockwork serve`` (whose timed
loop runs real-time) spent about half the run's wall time runnable but not running (BENCHMARKS.md
s.41). An answer that comes while the client waits for a core is read late, and its latency as
the client measures it includes the wait. So ``bench`` reports the wait beside its figures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuWait", "cpu_wait"]

#: where Linux lists the threads of the calling process
_TASKS = Path("/proc/self/task")


@dataclass(frozen=True, slots=True)
class CpuWait:
    """Totals over the process's live threads since each started."""

    run_ns: int  # on a CPU
    wait_ns: int  # runnable, waiting on a run queue

    def __sub__(self, earlier: CpuWait) -> CpuWait:
        return CpuWait(self.run_ns - earlier.run_ns, self.wait_ns - earlier.wait_ns)


def cpu_wait(tasks: Path = _TASKS) -> CpuWait | None:
    """This process's threads' run and run-queue times; None where the kernel does not keep
    them (not Linux, or scheduler statistics compiled out)."""
    run = wait = 0
    try:
        names = os.listdir(tasks)
    except OSError:
        return None
    for name in names:
        try:
            fields = (tasks / name / "schedstat").read_text().split()
        except OSError:
            continue  # the thread ended meanwhile
        if len(fields) < 2:
            return None
        run += int(fields[0])
        wait += int(fields[1])
    return CpuWait(run, wait)
