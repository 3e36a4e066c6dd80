"""Shared checks and vectorised helpers for the arrival generators.

Every generator draws from its own ``numpy.random.Generator(PCG64(seed))`` built afresh on each
call to ``arrivals()``, so iterating twice gives the same arrivals and no global state is touched.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from itertools import repeat

import numpy as np
from numpy.typing import NDArray

from clockwork.core.errors import InvalidInputError
from clockwork.core.units import NS_PER_S
from clockwork.workload.base import Arrival

# Expected arrivals per vectorised chunk of a Poisson process: big enough that numpy's per-call
# cost vanishes, small enough that a chunk is a few MB.
CHUNK_ARRIVALS = 1 << 16

# SLOs and times are kept below this so int64 arithmetic never overflows.
MAX_NS = 1 << 62


def check_models(owner: str, models: object) -> tuple[str, ...]:
    """Model names: a non-empty sequence of distinct non-empty strings (a bare ``str`` is
    refused)."""
    if isinstance(models, str) or not isinstance(models, Sequence):
        raise InvalidInputError(
            f"{owner}: models must be a sequence of model names, got {models!r}"
        )
    names = tuple(models)
    if not names:
        raise InvalidInputError(f"{owner}: models is empty")
    seen: set[str] = set()
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"{owner}: models[{i}] is {name!r}, not a non-empty string")
        if name in seen:
            raise InvalidInputError(f"{owner}: models[{i}] {name!r} appears twice")
        seen.add(name)
    return names


def check_int(owner: str, name: str, value: object, *, minimum: int) -> int:
    """An integer (not a bool) no smaller than ``minimum`` and below 2**62."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidInputError(f"{owner}: {name} must be an integer, got {value!r}")
    result = int(value)
    if result < minimum:
        raise InvalidInputError(f"{owner}: {name} must be >= {minimum}, got {result}")
    if result >= MAX_NS:
        raise InvalidInputError(f"{owner}: {name} must be < 2**62, got {result}")
    return result


def check_float(owner: str, name: str, value: object, *, positive: bool) -> float:
    """A finite real number, ``> 0`` when ``positive`` else ``>= 0``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InvalidInputError(f"{owner}: {name} must be a number, got {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise InvalidInputError(f"{owner}: {name} must be finite, got {result}")
    if positive and result <= 0.0:
        raise InvalidInputError(f"{owner}: {name} must be > 0, got {result}")
    if result < 0.0:
        raise InvalidInputError(f"{owner}: {name} must be >= 0, got {result}")
    return result


def check_seed(owner: str, seed: object) -> int:
    return check_int(owner, "seed", seed, minimum=0)


def make_rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


def weights_cdf(owner: str, weights: object, num_models: int) -> NDArray[np.float64] | None:
    """The cumulative distribution for ``weights`` (``None`` = uniform), ending at exactly 1.0."""
    if weights is None:
        return None
    if isinstance(weights, str) or not isinstance(weights, Sequence):
        raise InvalidInputError(f"{owner}: weights must be a sequence of numbers, got {weights!r}")
    if len(weights) != num_models:
        raise InvalidInputError(
            f"{owner}: weights has {len(weights)} entries but there are {num_models} models"
        )
    values = [check_float(owner, f"weights[{i}]", w, positive=False) for i, w in enumerate(weights)]
    cdf = np.cumsum(np.asarray(values, dtype=np.float64))
    if cdf[-1] <= 0.0:
        raise InvalidInputError(f"{owner}: weights sum to 0; at least one must be positive")
    # x / x == 1.0 exactly, so uniform draws in [0, 1) never pass the last positive weight.
    cdf /= cdf[-1]
    return cdf


def pick_models(
    rng: np.random.Generator, count: int, num_models: int, cdf: NDArray[np.float64] | None
) -> NDArray[np.int64]:
    """``count`` model indices, uniform or drawn by the cumulative weights ``cdf``."""
    if cdf is None:
        return rng.integers(0, num_models, size=count, dtype=np.int64)
    return np.searchsorted(cdf, rng.random(count), side="right").astype(np.int64)


def poisson_chunks(
    rng: np.random.Generator, rate_rps: float, start_ns: int, end_ns: int
) -> Iterator[NDArray[np.int64]]:
    """Sorted arrival times of a Poisson process of ``rate_rps`` in ``[start_ns, end_ns)``.

    The interval is cut into windows holding about ``CHUNK_ARRIVALS`` expected arrivals; in each,
    the count is Poisson and the times are uniform (the same process as exponential gaps).
    """
    if rate_rps <= 0.0 or end_ns <= start_ns:
        return
    window_ns = max(1, math.ceil(CHUNK_ARRIVALS * NS_PER_S / rate_rps))
    t = start_ns
    while t < end_ns:
        stop = min(end_ns, t + window_ns)
        count = int(rng.poisson(rate_rps * (stop - t) / NS_PER_S))
        if count:
            times = rng.integers(t, stop, size=count, dtype=np.int64)
            times.sort()
            yield times
        t = stop


def emit(
    times: NDArray[np.int64],
    model_index: NDArray[np.int64],
    names: NDArray[np.object_],
    slo_ns: int | NDArray[np.int64],
    priority: int = 0,
) -> Iterator[Arrival]:
    """Arrival objects for parallel arrays (the only per-arrival Python work: one constructor)."""
    count = len(times)
    slos = repeat(slo_ns, count) if isinstance(slo_ns, int) else slo_ns.tolist()
    yield from map(
        Arrival, times.tolist(), names[model_index].tolist(), slos, repeat(priority, count)
    )


def name_array(models: Sequence[str]) -> NDArray[np.object_]:
    arr = np.empty(len(models), dtype=object)
    arr[:] = list(models)
    return arr
