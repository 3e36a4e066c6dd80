"""Open-loop Poisson arrivals and evenly spaced (fixed-rate) arrivals."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from clockwork.core.units import NS_PER_S
from clockwork.workload._common import (
    CHUNK_ARRIVALS,
    check_float,
    check_int,
    check_models,
    check_seed,
    emit,
    make_rng,
    name_array,
    pick_models,
    poisson_chunks,
    weights_cdf,
)
from clockwork.workload.base import Arrival


@dataclass(frozen=True)
class PoissonOpenLoop:
    """Poisson arrivals at ``rate_rps`` in total over ``[0, duration_ns)``; each arrival goes to a
    model drawn independently by ``weights`` (uniform when ``None``)."""

    models: Sequence[str]
    rate_rps: float
    duration_ns: int
    slo_ns: int
    seed: int
    weights: Sequence[float] | None = None
    _names: NDArray[np.object_] = field(init=False, repr=False, compare=False)
    _cdf: NDArray[np.float64] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        owner = "PoissonOpenLoop"
        models = check_models(owner, self.models)
        object.__setattr__(self, "models", models)
        check_float(owner, "rate_rps", self.rate_rps, positive=False)
        check_int(owner, "duration_ns", self.duration_ns, minimum=1)
        check_int(owner, "slo_ns", self.slo_ns, minimum=1)
        check_seed(owner, self.seed)
        cdf = weights_cdf(owner, self.weights, len(models))
        if self.weights is not None:
            object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        object.__setattr__(self, "_cdf", cdf)
        object.__setattr__(self, "_names", name_array(models))

    def describe(self) -> dict[str, object]:
        return {
            "kind": "poisson",
            "synthetic": True,
            "models": list(self.models),
            "num_models": len(self.models),
            "rate_rps": float(self.rate_rps),
            "duration_ns": self.duration_ns,
            "slo_ns": self.slo_ns,
            "seed": self.seed,
            "weights": None if self.weights is None else list(self.weights),
        }

    def arrivals(self) -> Iterator[Arrival]:
        rng = make_rng(self.seed)
        n = len(self.models)
        for times in poisson_chunks(rng, float(self.rate_rps), 0, self.duration_ns):
            yield from emit(
                times, pick_models(rng, len(times), n, self._cdf), self._names, self.slo_ns
            )

    def on_response(self, arrival: Arrival, now_ns: int) -> Arrival | None:
        return None


@dataclass(frozen=True)
class FixedRate:
    """Evenly spaced arrivals at ``rate_rps`` over ``[0, duration_ns)``: the k-th (from 0) is at
    ``floor(k * (1e9 / rate_rps))`` ns and goes to ``models[k % len(models)]``. Deterministic."""

    models: Sequence[str]
    rate_rps: float
    duration_ns: int
    slo_ns: int
    _names: NDArray[np.object_] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        owner = "FixedRate"
        models = check_models(owner, self.models)
        object.__setattr__(self, "models", models)
        check_float(owner, "rate_rps", self.rate_rps, positive=True)
        check_int(owner, "duration_ns", self.duration_ns, minimum=1)
        check_int(owner, "slo_ns", self.slo_ns, minimum=1)
        object.__setattr__(self, "_names", name_array(models))

    def describe(self) -> dict[str, object]:
        return {
            "kind": "fixed_rate",
            "synthetic": True,
            "models": list(self.models),
            "num_models": len(self.models),
            "rate_rps": float(self.rate_rps),
            "interval_ns": NS_PER_S / float(self.rate_rps),
            "duration_ns": self.duration_ns,
            "slo_ns": self.slo_ns,
        }

    def arrivals(self) -> Iterator[Arrival]:
        rate = float(self.rate_rps)
        total = math.ceil(self.duration_ns * rate / NS_PER_S) + 1  # an upper bound on the count
        n = len(self.models)
        for start in range(0, total, CHUNK_ARRIVALS):
            k = np.arange(start, min(total, start + CHUNK_ARRIVALS), dtype=np.int64)
            exact = np.floor(k * (NS_PER_S / rate))  # float: compared before the int cast
            keep = exact < self.duration_ns
            k, times = k[keep], exact[keep].astype(np.int64)
            yield from emit(times, k % n, self._names, self.slo_ns)
            if not keep.all():
                return

    def on_response(self, arrival: Arrival, now_ns: int) -> Arrival | None:
        return None
