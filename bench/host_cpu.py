"""CPU time of a ``clockwork serve`` process tree, thread by thread (Linux ``/proc``), for the
benchmarks that measure what the serving host costs (``bench/calibrate_sim.py``).

``snapshot(pid)`` reads every thread of the process and of its descendants; the difference of two
snapshots, ``split``, says how much of it was the controller's loop (the server's main thread),
the worker's executor (the worker's busiest thread) and everything else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")

# (pid, tid) -> (cpu seconds, whether that process's command line names the worker)
Snapshot = dict[tuple[int, int], tuple[float, bool]]


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the parent's pid follows the state, after the command name in parentheses
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def _tree(pid: int) -> list[int]:
    pids = [pid]
    for child in _children(pid):
        pids += _tree(child)
    return pids


def snapshot(pid: int) -> Snapshot:
    """The CPU time (user + system) of every thread of ``pid`` and of its descendants now."""
    out: Snapshot = {}
    for p in _tree(pid):
        try:
            worker = b" worker " in Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                fields = Path(f"/proc/{p}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[(p, int(tid))] = ((int(fields[11]) + int(fields[12])) * _TICK_S, worker)
    return out


@dataclass(frozen=True)
class CpuSplit:
    """CPU seconds between two snapshots."""

    loop_s: float  # the server's main thread: the controller's loop and the front door
    executor_s: float  # the worker's busiest thread: the executions
    other_s: float  # every other thread of the tree (the worker's own loop, decode processes)


def split(server_pid: int, before: Snapshot, after: Snapshot) -> CpuSplit:
    spent = {k: cpu - before.get(k, (0.0, False))[0] for k, (cpu, _) in after.items()}
    loop = spent.get((server_pid, server_pid), 0.0)
    worker = [s for k, s in spent.items() if after[k][1]]
    executor = max(worker, default=0.0)
    return CpuSplit(loop, executor, sum(spent.values()) - loop - executor)
