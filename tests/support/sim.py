"""Small deterministic workloads and model sets for simulator tests."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from clockwork.core.events import ModelInfo
from clockwork.core.profile import DeviceKind, Measurement, ModelProfile
from clockwork.workload.base import Arrival


def small_kind(pages: int) -> DeviceKind:
    return DeviceKind("sim-gpu", page_size_bytes=16 << 20, cache_pages=pages)


def model_set(n: int, kind: DeviceKind, pages: int = 7) -> list[ModelInfo]:
    p = ModelProfile(
        "resnet50_v2",
        kind.name,
        pages * (16 << 20) - 5,
        16 << 20,
        pages,
        8_300_000,
        {1: 2_730_000, 2: 4_050_000, 4: 5_880_000, 8: 9_930_000, 16: 17_330_000},
        602_112,
        4_000,
        Measurement("test", "test", "copy of the V100 figures"),
    )
    return [ModelInfo(f"m{i:03d}", (p,)) for i in range(n)]


class SkewedPoisson:
    """Poisson arrivals; model i chosen with weight 1/(i+1); counts what it generated."""

    def __init__(
        self,
        models: list[str],
        rate_rps: float,
        duration_ns: int,
        slo_ns: int,
        seed: int,
        slo_spread: float = 0.0,
    ) -> None:
        self.models = models
        self.rate = rate_rps
        self.duration_ns = duration_ns
        self.slo_ns = slo_ns
        self.seed = seed
        self.slo_spread = slo_spread
        self.generated = 0

    def describe(self) -> dict[str, object]:
        return {"name": "skewed-poisson", "synthetic": True}

    def arrivals(self) -> Iterator[Arrival]:
        rng = random.Random(self.seed)
        weights = [1 / (i + 1) for i in range(len(self.models))]
        t = 0.0
        while True:
            t += rng.expovariate(self.rate)
            ns = int(t * 1e9)
            if ns >= self.duration_ns:
                return
            (model,) = rng.choices(self.models, weights)
            slo = int(self.slo_ns * (1 + self.slo_spread * rng.random()))
            self.generated += 1
            yield Arrival(ns, model, slo, priority=rng.randrange(2))

    def on_response(self, arrival: Arrival, now_ns: int) -> Arrival | None:
        return None


def answered_once(result: Any, generated: int) -> npt.NDArray[np.str_]:
    """Assert that every one of the ``generated`` requests of a simulation's ``result`` was
    answered exactly once, a success only inside its deadline and a late result only after it;
    return the requests' status names (in the log's order)."""
    req = result.requests.table()
    assert result.unanswered == 0
    assert len(req) == generated == result.responses
    assert len(np.unique(req.request_id)) == len(req)
    status: npt.NDArray[np.str_] = (
        np.array(req.status_names)[req.status] if len(req) else np.array([])
    )
    ok = status == "SUCCESS"
    assert (req.response_ns[ok] <= req.deadline_ns[ok]).all()
    late = status == "LATE"
    assert (req.response_ns[late] > req.deadline_ns[late]).all()
    return status
