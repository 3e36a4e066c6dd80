"""Poisson arrivals whose SLO changes by a constant factor every period (Clockwork's SLO sweep)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from clockwork.workload._common import (
    MAX_NS,
    check_float,
    check_int,
    check_models,
    check_seed,
    emit,
    make_rng,
    name_array,
    pick_models,
    poisson_chunks,
)
from clockwork.workload.base import Arrival


@dataclass(frozen=True)
class SloSweep:
    """Poisson arrivals at ``rate_rps`` in total (uniform over models) whose SLO is
    ``base_slo_ns * factor**p`` in period ``p = time_ns // period_ns``, rounded to the nearest ns
    and clamped to ``[min_slo_ns, 2**62)``; ``min_slo_ns`` defaults to 1 ns.

    ``factor=0.5`` halves the SLO every period; ``factor > 1`` relaxes it.
    """

    models: Sequence[str]
    rate_rps: float
    duration_ns: int
    base_slo_ns: int
    factor: float
    period_ns: int
    seed: int
    min_slo_ns: int | None = None
    _names: NDArray[np.object_] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        owner = "SloSweep"
        models = check_models(owner, self.models)
        object.__setattr__(self, "models", models)
        check_float(owner, "rate_rps", self.rate_rps, positive=False)
        check_int(owner, "duration_ns", self.duration_ns, minimum=1)
        check_int(owner, "base_slo_ns", self.base_slo_ns, minimum=1)
        check_float(owner, "factor", self.factor, positive=True)
        check_int(owner, "period_ns", self.period_ns, minimum=1)
        check_seed(owner, self.seed)
        if self.min_slo_ns is not None:
            check_int(owner, "min_slo_ns", self.min_slo_ns, minimum=1)
        object.__setattr__(self, "_names", name_array(models))

    @property
    def num_periods(self) -> int:
        return -(-self.duration_ns // self.period_ns)

    def _slos(self, periods: NDArray[np.int64]) -> NDArray[np.int64]:
        floor = 1 if self.min_slo_ns is None else self.min_slo_ns
        with np.errstate(over="ignore", under="ignore"):
            raw = np.rint(
                float(self.base_slo_ns) * np.power(float(self.factor), periods, dtype=np.float64)
            )
        return np.clip(raw, floor, MAX_NS - 1).astype(np.int64)

    def slo_at(self, time_ns: int) -> int:
        """The SLO given to an arrival at ``time_ns``."""
        period = np.array([time_ns // self.period_ns], dtype=np.int64)
        return int(self._slos(period)[0])

    def slo_schedule(self) -> list[tuple[int, int]]:
        """``(period start ns, SLO ns)`` for every period of the run."""
        starts = np.arange(self.num_periods, dtype=np.int64)
        return list(
            zip((starts * self.period_ns).tolist(), self._slos(starts).tolist(), strict=True)
        )

    def describe(self) -> dict[str, object]:
        return {
            "kind": "slo_sweep",
            "synthetic": True,
            "models": list(self.models),
            "num_models": len(self.models),
            "rate_rps": float(self.rate_rps),
            "duration_ns": self.duration_ns,
            "base_slo_ns": self.base_slo_ns,
            "factor": float(self.factor),
            "period_ns": self.period_ns,
            "min_slo_ns": 1 if self.min_slo_ns is None else self.min_slo_ns,
            "num_periods": self.num_periods,
            "final_slo_ns": self.slo_at(self.duration_ns - 1),
            "seed": self.seed,
        }

    def arrivals(self) -> Iterator[Arrival]:
        rng = make_rng(self.seed)
        n = len(self.models)
        for times in poisson_chunks(rng, float(self.rate_rps), 0, self.duration_ns):
            slos = self._slos(times // self.period_ns)
            yield from emit(times, pick_models(rng, len(times), n, None), self._names, slos)

    def on_response(self, arrival: Arrival, now_ns: int) -> Arrival | None:
        return None
