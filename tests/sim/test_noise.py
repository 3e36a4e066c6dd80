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


def test_a_drift_is_slow_in_time_and_has_its_configured_spread() -> None:
    """With ``drift_sigma`` the durations share a factor exp(X(t)), X an Ornstein-Uhlenbeck
    process: draws 1 ms apart move together (correlation exp(-1 ms / tau) ~ 0.99 at tau 100
    ms), draws a second apart hardly (exp(-10) ~ 0), and log(duration) spreads by drift_sigma."""
    config = NoiseConfig("none", drift_sigma=0.2, drift_tau_ns=100_000_000)
    noise = Noise(config, 11)
    logs = [math.log(noise.apply(1_000_000, t * 1_000_000) / 1_000_000) for t in range(100_000)]
    assert statistics.stdev(logs) == pytest.approx(0.2, rel=0.1)
    near = statistics.correlation(logs[:-1], logs[1:])
    far = statistics.correlation(logs[:-1000], logs[1000:])
    assert near > 0.95
    assert abs(far) < 0.1
    # without a drift the same kind leaves durations alone, whatever the time
    plain = Noise(NoiseConfig("none"), 11)
    assert {plain.apply(1_000_000, t) for t in range(0, 10**9, 10**7)} == {1_000_000}


def test_a_drift_does_not_change_the_other_draws() -> None:
    """The drift has a generator of its own: with it on, the log-normal draws are the same, each
    times the drift's factor."""
    base = NoiseConfig("lognormal", sigma=0.1)
    drifting = NoiseConfig("lognormal", sigma=0.1, drift_sigma=0.3, drift_tau_ns=10**9)
    a, b = Noise(base, 4), Noise(drifting, 4)
    ratios = [b.apply(10**9, t * 10**6) / a.apply(10**9, t * 10**6) for t in range(5000)]
    assert len({round(r, 3) for r in ratios}) > 100  # the drift moves
    assert statistics.stdev(math.log(r) for r in ratios) == pytest.approx(0.3, rel=0.35)


@pytest.mark.parametrize(
    "config",
    [
        {"drift_sigma": -0.1},
        {"drift_sigma": 0.1, "drift_tau_ns": 0},
    ],
)
def test_a_bad_drift_is_refused(config: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="drift"):
        NoiseConfig("lognormal", **config)  # type: ignore[arg-type]
