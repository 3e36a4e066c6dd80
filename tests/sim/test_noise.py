"""The noise models draw what their configuration says, reproducibly."""

import math
import statistics

import pytest

from clockwork.sim.noise import CHUNK, Noise, NoiseConfig


def _draws(config: NoiseConfig, seed: int, n: int = 20_000) -> list[int]:
    noise = Noise(config, seed)
    return [noise.apply(1_000_000) for _ in range(n)]


def test_none_leaves_durations_alone() -> None:
    noise = Noise(NoiseConfig("none"), 1)
    assert [noise.apply(d) for d in (1, 7, 10**9)] == [1, 7, 10**9]
    assert noise.apply(0) == 1  # never a zero duration


def test_lognormal_has_the_configured_spread_and_no_stragglers() -> None:
    logs = [math.log(d / 1_000_000) for d in _draws(NoiseConfig("lognormal", sigma=0.05), 3)]
    assert abs(statistics.fmean(logs)) < 0.002
    assert statistics.stdev(logs) == pytest.approx(0.05, rel=0.05)
    assert max(logs) < math.log(1.5)


def test_stragglers_come_at_the_configured_rate_and_factor() -> None:
    draws = _draws(NoiseConfig("straggler", straggler_prob=0.1, straggler_factor=3.0), 5)
    slow = [d for d in draws if d != 1_000_000]
    assert set(slow) == {3_000_000}
    assert len(slow) / len(draws) == pytest.approx(0.1, abs=0.01)


def test_same_seed_same_draws_other_seed_other_draws() -> None:
    config = NoiseConfig("lognormal+straggler", sigma=0.02, straggler_prob=0.01)
    # more than one chunk, so that refills are covered too
    n = CHUNK * 2 + 5
    assert _draws(config, 9, n) == _draws(config, 9, n)
    assert _draws(config, 9, n) != _draws(config, 10, n)
    assert _draws(config, -9, 100) == _draws(config, 9, 100)


def test_a_scaled_device_runs_that_many_times_the_profile_under_its_noise() -> None:
    assert [Noise(NoiseConfig("none"), 1, 3.0).apply(d) for d in (1, 10**6)] == [3, 3 * 10**6]
    config = NoiseConfig("lognormal", sigma=0.05)
    plain, scaled = Noise(config, 4), Noise(config, 4, 2.5)
    for _ in range(CHUNK + 3):  # the same draws, each scaled
        assert scaled.apply(10**6) == pytest.approx(2.5 * plain.apply(10**6), abs=2)
    with pytest.raises(ValueError, match="scale"):
        Noise(config, 1, 0.0)
