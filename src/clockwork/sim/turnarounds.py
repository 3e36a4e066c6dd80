"""The worker's turnaround between Infers in the simulator, drawn from what a real worker took.

A real worker starts an Infer queued behind another a moment after that one ends (the result
sent, the next inputs put in place): on this project's 2-core host with 16 ONNX models, a median
of 58 us but a mean of 114 us, a p99 of 1.46 ms and now and then over 10 ms (BENCHMARKS.md
s.39). The tail is what makes an Infer planned with no room reach the worker too late; a
constant median leaves it out. ``Turnarounds`` draws each turnaround by inverse transform from
the measured quantiles (``HostConfig.worker_turnaround_quantiles_ns``), from a generator of its
own so that the simulation's other draws stay as they were.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import numpy as np

from clockwork.sim.noise import CHUNK

__all__ = ["Turnarounds", "check_quantiles"]


def check_quantiles(quantiles_ns: Sequence[int]) -> str:
    """What is wrong with ``quantiles_ns`` as evenly spaced quantiles (the least first, the
    greatest last); "" if nothing."""
    if not quantiles_ns:
        return ""
    if len(quantiles_ns) < 2:
        return "need at least two quantiles (the least and the greatest)"
    if quantiles_ns[0] < 0:
        return f"quantiles must be >= 0 ns, got {quantiles_ns[0]}"
    if any(b < a for a, b in pairwise(quantiles_ns)):
        return "quantiles must not decrease"
    return ""


class Turnarounds:
    """Turnarounds drawn from ``quantiles_ns`` (evenly spaced probabilities from 0 to 1,
    linearly interpolated between them), with ``seed``."""

    __slots__ = ("_draws", "_i", "_quantiles", "_rng", "_steps")

    def __init__(self, quantiles_ns: Sequence[int], seed: int) -> None:
        why = check_quantiles(quantiles_ns)
        if why or not quantiles_ns:
            raise ValueError(f"turnaround quantiles: {why or 'none given'}")
        self._quantiles = np.asarray(quantiles_ns, dtype=np.float64)
        self._steps = np.linspace(0.0, 1.0, len(quantiles_ns))
        self._rng = np.random.default_rng([abs(seed), 0x7A2])
        self._draws: list[int] = []
        self._i = 0

    def next_ns(self) -> int:
        """The next turnaround."""
        i = self._i
        if i == len(self._draws):
            u = self._rng.random(CHUNK)  # drawn a chunk at a time, as the noise is
            self._draws = (
                np.interp(u, self._steps, self._quantiles).round().astype(np.int64).tolist()
            )
            i = 0
        self._i = i + 1
        return self._draws[i]
