"""On/off Poisson arrivals: bursts at one rate alternating with quiet spells at another."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from clockwork.workload._common import (
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
class Bursty:
    """Poisson arrivals whose total rate alternates: ``on_rate_rps`` for ``on_ns``, then
    ``off_rate_rps`` for ``off_ns``, repeating from time 0 (which starts an "on" phase) until
    ``duration_ns``. Each arrival goes to a uniformly drawn model."""

    models: Sequence[str]
    on_rate_rps: float
    off_rate_rps: float
    on_ns: int
    off_ns: int
    duration_ns: int
    slo_ns: int
    seed: int
    _names: NDArray[np.object_] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        owner = "Bursty"
        models = check_models(owner, self.models)
        object.__setattr__(self, "models", models)
        check_float(owner, "on_rate_rps", self.on_rate_rps, positive=False)
        check_float(owner, "off_rate_rps", self.off_rate_rps, positive=False)
        check_int(owner, "on_ns", self.on_ns, minimum=1)
        check_int(owner, "off_ns", self.off_ns, minimum=0)
        check_int(owner, "duration_ns", self.duration_ns, minimum=1)
        check_int(owner, "slo_ns", self.slo_ns, minimum=1)
        check_seed(owner, self.seed)
        object.__setattr__(self, "_names", name_array(models))

    @property
    def mean_rate_rps(self) -> float:
        """The long-run mean rate (whole on/off cycles)."""
        cycle = self.on_ns + self.off_ns
        return (self.on_rate_rps * self.on_ns + self.off_rate_rps * self.off_ns) / cycle

    def is_on(self, time_ns: int) -> bool:
        """Whether ``time_ns`` falls in an "on" phase."""
        return time_ns % (self.on_ns + self.off_ns) < self.on_ns

    def describe(self) -> dict[str, object]:
        return {
            "kind": "bursty",
            "synthetic": True,
            "models": list(self.models),
            "num_models": len(self.models),
            "on_rate_rps": float(self.on_rate_rps),
            "off_rate_rps": float(self.off_rate_rps),
            "on_ns": self.on_ns,
            "off_ns": self.off_ns,
            "mean_rate_rps": self.mean_rate_rps,
            "duration_ns": self.duration_ns,
            "slo_ns": self.slo_ns,
            "seed": self.seed,
        }

    def arrivals(self) -> Iterator[Arrival]:
        rng = make_rng(self.seed)
        n = len(self.models)
        phases = ((float(self.on_rate_rps), self.on_ns), (float(self.off_rate_rps), self.off_ns))
        t = 0
        phase = 0
        while t < self.duration_ns:
            rate, length = phases[phase]
            stop = min(self.duration_ns, t + length)
            for times in poisson_chunks(rng, rate, t, stop):
                yield from emit(
                    times, pick_models(rng, len(times), n, None), self._names, self.slo_ns
                )
            t = stop
            phase ^= 1

    def on_response(self, arrival: Arrival, now_ns: int) -> Arrival | None:
        return None
