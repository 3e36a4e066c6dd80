"""CPU cost of a ``/metrics`` scrape on the controller's loop, and the part of it that the
``process_*`` metrics add (``clockwork.frontend.process_metrics``: the controller and one watched
child, read from ``/proc``).

Each case runs ``--number`` times per repeat; the best of ``--repeat`` repeats is printed, in
microseconds of this process's CPU time per call, so that noise from other processes on a shared
machine only ever adds. The rendering is of a fresh ``ServingMetrics`` (no models): the fixed
cost, which is what the process metrics add to.

    .venv/bin/python bench/scrape_cost.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable

from clockwork.frontend.metrics import ServingMetrics


def best_cpu_us(fn: Callable[[], object], number: int, repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        for _ in range(number):
            fn()
        best = min(best, (time.process_time() - t) / number)
    return best * 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--number", type=int, default=500, help="calls per repeat")
    p.add_argument("--repeat", type=int, default=7, help="repeats (the best is printed)")
    args = p.parse_args()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        with_processes = ServingMetrics()
        with_processes.processes.watch("local_worker", lambda: child.pid)
        without = ServingMetrics()
        without.registry.unregister(without.processes)
        rows = [
            ("metrics_text, with process_* (2 processes)", with_processes.metrics_text),
            ("metrics_text, without process_*", without.metrics_text),
            (
                "process_* collector alone (2 processes)",
                lambda: list(with_processes.processes.collect()),
            ),
        ]
        for name, fn in rows:
            print(f"{name:45s} {best_cpu_us(fn, args.number, args.repeat):8.0f} us CPU / call")
    finally:
        child.kill()
        child.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
