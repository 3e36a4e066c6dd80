"""How simulated durations deviate from the profile: seeded, composable noise models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

NOISE_KINDS = ("none", "lognormal", "straggler", "lognormal+straggler")
# multipliers drawn at once
CHUNK: Final = 4096


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
            raise ValueError(
                "noise: sigma >= 0, 0 <= straggler_prob <= 1 and straggler_factor >= 1 required"
            )


class Noise:
    """Draws duration multipliers, ``CHUNK`` at a time from a private numpy generator (one draw
    each from Python's ``random`` cost about a tenth of a compiled simulation's time)."""

    __slots__ = (
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
        # every duration as the profile has it: no draw needed
        self._plain = not (self._lognormal or self._straggler or scale != 1.0)
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

    def apply(self, duration_ns: int) -> int:
        if self._plain:
            return max(1, duration_ns)
        i = self._i
        if i == len(self._factors):
            self._refill()
            i = 0
        self._i = i + 1
        # int(x + 0.5), not round(): the builtin is a Python call in compiled code (and only
        # differs at exact halves, which these products do not hit)
        return max(1, int(duration_ns * self._factors[i] + 0.5))
