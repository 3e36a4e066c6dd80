import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clockwork.core.estimator import EstimatorConfig, LatencyEstimator, ModelEstimates


def test_seed_is_the_first_estimate() -> None:
    e = LatencyEstimator(5_000, EstimatorConfig())
    assert e.estimate_ns == 5_000


def test_p99_of_ten_is_the_maximum_of_the_window() -> None:
    e = LatencyEstimator(100, EstimatorConfig(window=10, percentile=99))
    for v in [10, 20, 30, 40, 50, 60, 70, 80, 90]:
        e.observe(v)
    assert e.estimate_ns == 100  # seed still in the window, and it is the largest
    e.observe(5)  # pushes the seed out
    assert e.samples == (10, 20, 30, 40, 50, 60, 70, 80, 90, 5)
    assert e.estimate_ns == 90


def test_median_percentile_and_window() -> None:
    e = LatencyEstimator(1, EstimatorConfig(window=4, percentile=50))
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


@given(window=st.integers(1, 12), pct=st.floats(1.0, 100.0),
       values=st.lists(st.integers(-5, 10**6), max_size=60))
def test_estimate_is_the_percentile_of_the_last_window(window: int, pct: float,
                                                       values: list[int]) -> None:
    est = LatencyEstimator(1000, EstimatorConfig(window, pct))
    kept = [1000]
    for v in values:
        est.observe(v)
        if v > 0:
            kept = [*kept, v][-window:]
        ordered = sorted(kept)
        assert est.estimate_ns == ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]
        assert est.samples == tuple(kept)
