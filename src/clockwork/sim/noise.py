"""How simulated durations deviate from the profile: seeded, composable noise models."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

NOISE_KINDS = ("none", "lognormal", "straggler", "lognormal+straggler")


@dataclass(frozen=True, slots=True)
class NoiseConfig:
    """``lognormal``: multiply by exp(N(0, sigma)); ``straggler``: with probability
    ``straggler_prob`` multiply by ``straggler_factor``. Both may be on at once."""

    kind: str = "lognormal"
    sigma: float = 0.01
    straggler_prob: float = 1e-4
    straggler_factor: float = 2.0

    def __post_init__(self) -> None:
        if self.kind not in NOISE_KINDS:
            raise ValueError(f"noise kind {self.kind!r}; choose one of {', '.join(NOISE_KINDS)}")
        if self.sigma < 0 or not 0 <= self.straggler_prob <= 1 or self.straggler_factor < 1:
            raise ValueError("noise: sigma >= 0, 0 <= straggler_prob <= 1 and "
                             "straggler_factor >= 1 required")


class Noise:
    """Draws duration multipliers from a private ``random.Random``."""

    __slots__ = ("_factor", "_lognormal", "_prob", "_rng", "_sigma", "_straggler")

    def __init__(self, config: NoiseConfig, seed: int) -> None:
        self._rng = random.Random(seed)
        self._lognormal = "lognormal" in config.kind and config.sigma > 0
        self._straggler = "straggler" in config.kind and config.straggler_prob > 0
        self._sigma = config.sigma
        self._prob = config.straggler_prob
        self._factor = config.straggler_factor

    def apply(self, duration_ns: int) -> int:
        x = float(duration_ns)
        if self._lognormal:
            x *= math.exp(self._rng.gauss(0.0, self._sigma))
        if self._straggler and self._rng.random() < self._prob:
            x *= self._factor
        return max(1, round(x))
