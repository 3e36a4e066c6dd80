"""A noisy neighbour: one process that keeps part of one core busy, the part varying over time.

Usage: ``python bench/peers/noise.py [--period-s 10] [--low 0] [--high 1] [--duration-s S]``

The duty cycle follows a sine between ``--low`` and ``--high`` (fractions of one core) with period
``--period-s``, starting at ``--low``: every 10 ms slice the process spins for duty x 10 ms and
sleeps for the rest. It runs until ``--duration-s`` has passed or it gets SIGTERM/SIGINT. Standard
library only; ``compare.py --noise sine`` starts one, from the same phase, around each measurement
so that every server meets the same background load.
"""

import argparse
import math
import signal
import sys
import time

SLICE_S = 0.010


def duty(t: float, period_s: float, low: float, high: float) -> float:
    """The busy fraction at ``t`` seconds: ``low`` at t = 0, ``high`` half a period later."""
    return low + (high - low) * (1.0 - math.cos(2.0 * math.pi * t / period_s)) / 2.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--period-s", type=float, default=10.0)
    p.add_argument("--low", type=float, default=0.0, help="least busy fraction of one core")
    p.add_argument("--high", type=float, default=1.0, help="most busy fraction of one core")
    p.add_argument("--duration-s", type=float, default=None, help="default: until stopped")
    args = p.parse_args()
    if not (0 <= args.low <= args.high <= 1) or args.period_s <= 0:
        p.error("need 0 <= --low <= --high <= 1 and --period-s > 0")
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    t0 = time.monotonic()
    busy_s = 0.0
    while not stop:
        start = time.monotonic()
        t = start - t0
        if args.duration_s is not None and t >= args.duration_s:
            break
        spin_until = start + SLICE_S * duty(t, args.period_s, args.low, args.high)
        while time.monotonic() < spin_until:
            pass
        busy_s += time.monotonic() - start
        rest = start + SLICE_S - time.monotonic()
        if rest > 0:
            time.sleep(rest)
    elapsed = time.monotonic() - t0
    print(
        f"noise: {busy_s:.1f} s busy of {elapsed:.1f} s ({busy_s / max(elapsed, 1e-9):.0%})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
