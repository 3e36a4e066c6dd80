import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clockwork.core.estimator import EstimatorConfig, LatencyEstimator, ModelEstimates

from support.units import S


def test_seed_is_the_first_estimate() -> None:
    e = LatencyEstimator(5_000, EstimatorConfig())
    assert e.estimate_ns == 5_000


def test_p99_of_ten_is_the_maximum_of_the_window() -> None:
    e = LatencyEstimator(100, EstimatorConfig(window=10, percentile=99, outlier_factor=0))
    for v in [10, 20, 30, 40, 50, 60, 70, 80, 90]:
        e.observe(v)
    assert e.estimate_ns == 100  # seed still in the window, and it is the largest
    e.observe(5)  # pushes the seed out
    assert e.samples == (10, 20, 30, 40, 50, 60, 70, 80, 90, 5)
    assert e.estimate_ns == 90


def test_median_percentile_and_window() -> None:
    e = LatencyEstimator(1, EstimatorConfig(window=4, percentile=50, outlier_factor=0))
    for v in [10, 40, 20, 30]:
        e.observe(v)
    # window [10, 40, 20, 30] sorted [10, 20, 30, 40]: nearest-rank median is 20
    assert e.estimate_ns == 20


def test_nonpositive_measurements_are_ignored() -> None:
    e = LatencyEstimator(50, EstimatorConfig())
    e.observe(0)
    e.observe(-3)
    assert e.samples == (50,)


@pytest.mark.parametrize("window,pct", [(0, 99.0), (10, 0.0), (10, 100.5)])
def test_bad_config_is_rejected(window: int, pct: float) -> None:
    with pytest.raises(ValueError):
        EstimatorConfig(window=window, percentile=pct)


def test_model_estimates_per_batch_and_load() -> None:
    m = ModelEstimates({1: 10, 4: 30}, 99, EstimatorConfig())
    assert m.batch_sizes == (1, 4)
    assert m.exec_ns(4) == 30
    m.exec[4].observe(45)
    assert m.exec_ns(4) == 45
    assert m.exec_ns(1) == 10
    assert m.load.estimate_ns == 99


@given(
    window=st.integers(1, 12),
    pct=st.floats(1.0, 100.0),
    values=st.lists(st.integers(-5, 10**6), max_size=60),
)
def test_estimate_is_the_percentile_of_the_last_window(
    window: int, pct: float, values: list[int]
) -> None:
    # outliers off: the paper's rule, every measurement counts at once
    est = LatencyEstimator(1000, EstimatorConfig(window, pct, outlier_factor=0))
    kept = [1000]
    for v in values:
        est.observe(v)
        if v > 0:
            kept = [*kept, v][-window:]
        ordered = sorted(kept)
        assert est.estimate_ns == ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]
        assert est.samples == tuple(kept)


def test_one_outlier_does_not_move_the_estimate() -> None:
    e = LatencyEstimator(10, EstimatorConfig())
    for _ in range(9):
        e.observe(10, 0)
    e.observe(400, 1)  # a worker paused once: 40x
    assert e.estimate_ns == 10 and 400 not in e.samples
    for _ in range(10):
        e.observe(10, 2)
    assert e.estimate_ns == 10


def test_a_second_outlier_confirms_the_first() -> None:
    e = LatencyEstimator(10, EstimatorConfig())
    for _ in range(9):
        e.observe(10, 0)
    e.observe(400, 1_000)
    e.observe(10, 1_100)
    e.observe(390, 2_000)  # the executor really is slower now
    assert 400 in e.samples and 390 in e.samples
    assert e.estimate_ns == 400


def test_outliers_too_far_apart_are_both_dropped() -> None:
    e = LatencyEstimator(10, EstimatorConfig(window=4))
    for _ in range(4):
        e.observe(10, 0)
    e.observe(400, 1_000)
    for _ in range(4):  # a whole window of normal runs: the first outlier is forgotten
        e.observe(10, 1_100)
    e.observe(400, 2_000)
    assert e.estimate_ns == 10 and e.outliers_dropped == 1


def test_old_samples_age_out_and_the_seed_returns() -> None:
    e = LatencyEstimator(10, EstimatorConfig(outlier_factor=0))
    e.observe(30, 1 * S)
    e.observe(12, 2 * S)
    assert e.estimate_ns == 30
    assert not e.refresh(3 * S, 10 * S)  # nothing old enough
    assert e.refresh(11 * S + 500, 10 * S)  # the seed (at 1 s) and 30 are gone
    assert e.samples == (12,) and e.estimate_ns == 12
    assert e.refresh(13 * S, 10 * S)
    assert e.estimate_ns == 10 and e.samples == (10,)


def test_spread_and_probability() -> None:
    e = LatencyEstimator(100, EstimatorConfig(outlier_factor=0))
    for v in [100, 110, 90, 105, 95, 100, 102, 98, 100]:
        e.observe(v, 0)
    sp = e.spread()
    assert sp.samples == 10 and sp.median_ns == 100
    assert 0.0 < sp.log_sd < 0.1
    assert sp.probability_within(200) > 0.999
    assert sp.probability_within(50) < 0.001
    assert 0.4 < sp.probability_within(100) < 0.6
    assert sp.quantile_ns(0.5) == pytest.approx(100, rel=0.02)
    assert sp.quantile_ns(0.99) > sp.quantile_ns(0.5)


@given(
    window=st.integers(1, 12),
    factor=st.floats(1.5, 10.0),
    values=st.lists(st.integers(1, 10**6), max_size=60),
)
def test_estimate_stays_a_percentile_of_what_was_measured(
    window: int, factor: float, values: list[int]
) -> None:
    est = LatencyEstimator(1000, EstimatorConfig(window, 99.0, outlier_factor=factor))
    gap = 10**7  # runs one after another: none overlaps the next in time
    for i, v in enumerate(values):
        est.observe(v, i * gap)
        assert len(est.samples) <= window
        assert set(est.samples) <= {1000, *values[: i + 1]}
        assert est.estimate_ns in est.samples
    # a full window of equal runs is the estimate, and an isolated outlier then never enters
    t0 = (len(values) + 1) * gap
    for i in range(window + 1):
        est.observe(7, t0 + i * gap)
    assert est.estimate_ns == 7
    est.observe(7 * 10**6, t0 + (window + 2) * gap)
    assert est.estimate_ns == 7


def test_outliers_that_overlapped_in_time_are_one_witness() -> None:
    # a paused worker: two devices' runs of the same model both took 500 ms, ending together
    e = LatencyEstimator(10, EstimatorConfig())
    for _ in range(5):
        e.observe(10, 0)
    e.observe(500, 1_000)
    e.observe(499, 1_001)
    assert e.estimate_ns == 10
    e.observe(480, 2_000)  # began at 1,520, after both had ended: a real slowdown
    assert e.estimate_ns == 500


# ------------------------------------------------------------ admission by probability (level)


@given(
    level=st.floats(0.5, 0.999),
    values=st.lists(st.integers(100_000, 10**9), min_size=1, max_size=40),
)
def test_a_level_estimate_is_that_quantile_of_a_lognormal_fit_of_the_window(
    level: float, values: list[int]
) -> None:
    from statistics import NormalDist

    est = LatencyEstimator(5_000_000, EstimatorConfig(outlier_factor=0, level=level))
    kept = [5_000_000]
    for v in values:
        est.observe(v)
        kept = [*kept, v][-10:]
        if len(set(kept)) == 1:
            assert est.estimate_ns == kept[0]
            continue
        logs = [math.log(x) for x in kept]
        mean = sum(logs) / len(logs)
        sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / (len(logs) - 1))
        want = math.exp(mean + NormalDist().inv_cdf(level) * sd)
        assert est.estimate_ns == pytest.approx(want, rel=1e-9, abs=1)
        # one run stays within it with the level's probability, under the same fit
        assert est.spread().probability_within(est.estimate_ns) == pytest.approx(level, abs=1e-4)


def test_with_no_spread_a_level_gives_exactly_the_runs_duration() -> None:
    # a steady executor (the V100 profile without noise): the same number as the paper's rule
    for level in (0.5, 0.9, 0.99):
        e = LatencyEstimator(2_730_000, EstimatorConfig(level=level))
        for _ in range(25):
            e.observe(2_730_000)
        assert e.estimate_ns == 2_730_000


def test_a_level_is_below_one_slow_run_that_the_paper_rule_keeps_for_ten_runs() -> None:
    # a noisy CPU: 12-14 ms, and one run of 20 ms (under the outlier factor, so it counts)
    runs = [12_000_000, 13_000_000, 14_000_000, 12_500_000, 20_000_000]
    runs += [13_500_000, 12_200_000, 13_100_000, 12_800_000]
    paper = LatencyEstimator(13_000_000, EstimatorConfig())
    level = LatencyEstimator(13_000_000, EstimatorConfig(level=0.9))
    for r in runs:
        paper.observe(r)
        level.observe(r)
    assert paper.estimate_ns == 20_000_000
    assert 14_000_000 < level.estimate_ns < 20_000_000


@pytest.mark.parametrize("level", [-0.1, 1.0, 1.5])
def test_a_level_outside_0_1_is_rejected(level: float) -> None:
    with pytest.raises(ValueError, match="level"):
        EstimatorConfig(level=level)
