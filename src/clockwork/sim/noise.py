"""How simulated durations deviate from the profile: seeded, composable noise models."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

from clockwork.core.units import NS_PER_S

NOISE_KINDS = ("none", "lognormal", "straggler", "lognormal+straggler")
# multipliers drawn at once
CHUNK: Final = 4096


@dataclass(frozen=True, slots=True)
class NoiseConfig:
    """``lognormal``: multiply by exp(N(0, sigma)); ``straggler``: with probability
    ``straggler_prob`` multiply by ``straggler_factor``. Both may be on at once.

    Any kind may drift too (``drift_sigma`` > 0): every duration of a device is also multiplied
    by exp(X(t)), X an Ornstein-Uhlenbeck process in time, its standard deviation
    ``drift_sigma`` and its correlation time ``drift_tau_ns``. A shared host slows executions in
    phases, not one at a time: on this project's 2-core machine the mean of the executions in a
    second varied 4-7 times more than independent draws would (BENCHMARKS.md s.36)."""

    kind: str = "lognormal"
    sigma: float = 0.01
    straggler_prob: float = 1e-4
    straggler_factor: float = 2.0
    drift_sigma: float = 0.0
    drift_tau_ns: int = NS_PER_S

    def __post_init__(self) -> None:
        if self.kind not in NOISE_KINDS:
            raise ValueError(f"noise kind {self.kind!r}; choose one of {', '.join(NOISE_KINDS)}")
        if self.sigma < 0 or not 0 <= self.straggler_prob <= 1 or self.straggler_factor < 1:
            raise ValueError(
                "noise: sigma >= 0, 0 <= straggler_prob <= 1 and straggler_factor >= 1 required"
            )
        if self.drift_sigma < 0 or self.drift_tau_ns <= 0:
            raise ValueError("noise: drift_sigma >= 0 and drift_tau_ns > 0 required")


class Noise:
    """Draws duration multipliers, ``CHUNK`` at a time from a private numpy generator (one draw
    each from Python's ``random`` cost about a tenth of a compiled simulation's time)."""

    __slots__ = (
        "_drift_at_ns",
        "_drift_i",
        "_drift_normals",
        "_drift_rng",
        "_drift_sigma",
        "_drift_tau_ns",
        "_drift_x",
        "_factor",
        "_factors",
        "_i",
        "_lognormal",
        "_plain",
        "_prob",
        "_rng",
        "_scale",
        "_sigma",
        "_straggler",
    )

    def __init__(self, config: NoiseConfig, seed: int, scale: float = 1.0) -> None:
        """``scale``: every duration is that many times the profile's before the noise (a
        device slower than its kind, e.g. a throttled one)."""
        if scale <= 0:
            raise ValueError(f"noise: scale must be > 0, got {scale}")
        self._rng = np.random.default_rng(abs(seed))
        self._lognormal = "lognormal" in config.kind and config.sigma > 0
        self._straggler = "straggler" in config.kind and config.straggler_prob > 0
        self._scale = scale
        self._drift_sigma = config.drift_sigma
        self._drift_tau_ns = config.drift_tau_ns
        # every duration as the profile has it: no draw needed
        self._plain = not (self._lognormal or self._straggler or scale != 1.0) and not (
            config.drift_sigma > 0
        )
        # the drift's state: its value, when it was last moved (-1: never), and its own draws
        # (a second generator: the other draws stay as they were without a drift)
        self._drift_x = 0.0
        self._drift_at_ns = -1
        self._drift_normals: list[float] = []
        self._drift_i = 0
        self._drift_rng = np.random.default_rng([abs(seed), 0xD81F7])
        self._sigma = config.sigma
        self._prob = config.straggler_prob
        self._factor = config.straggler_factor
        self._factors: list[float] = []
        self._i = 0

    def _refill(self) -> None:
        n = CHUNK
        f = (
            self._rng.lognormal(0.0, self._sigma, n)
            if self._lognormal
            else np.ones(n, dtype=np.float64)
        )
        if self._straggler:
            f = np.where(self._rng.random(n) < self._prob, f * self._factor, f)
        if self._scale != 1.0:
            f = f * self._scale
        self._factors = f.tolist()
        self._i = 0

    def _drift(self, now_ns: int) -> float:
        """The drift's factor at ``now_ns`` (exp of the process, moved on from its last time)."""
        i = self._drift_i
        if i == len(self._drift_normals):
            self._drift_normals = self._drift_rng.standard_normal(CHUNK).tolist()
            i = 0
        self._drift_i = i + 1
        z = self._drift_normals[i]
        if self._drift_at_ns < 0:
            x = self._drift_sigma * z  # the stationary distribution
        else:
            a = math.exp(-max(0, now_ns - self._drift_at_ns) / self._drift_tau_ns)
            x = a * self._drift_x + self._drift_sigma * math.sqrt(1.0 - a * a) * z
        self._drift_x = x
        self._drift_at_ns = now_ns
        return math.exp(x)

    def apply(self, duration_ns: int, now_ns: int = 0) -> int:
        """``duration_ns`` with noise, for an action starting at ``now_ns`` (the drift's time)."""
        if self._plain:
            return max(1, duration_ns)
        i = self._i
        if i == len(self._factors):
            self._refill()
            i = 0
        self._i = i + 1
        f = self._factors[i]
        if self._drift_sigma > 0:
            f *= self._drift(now_ns)
        # int(x + 0.5), not round(): the builtin is a Python call in compiled code (and only
        # differs at exact halves, which these products do not hit)
        return max(1, int(duration_ns * f + 0.5))
