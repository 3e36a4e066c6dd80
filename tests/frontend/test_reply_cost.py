import pytest

from clockwork.frontend.reply_cost import ReplyCost


def test_margin_is_a_high_percentile_of_recent_answers() -> None:
    r = ReplyCost(window=10, percentile=90, every=1)
    assert r.margin_ns == 0
    for v in [1, 2, 3, 4, 5, 6, 7, 8, 9, 100]:
        r.observe(v)
    assert r.margin_ns == 9  # nearest rank 9 of 10
    for _ in range(10):  # the window moves on
        r.observe(4)
    assert r.margin_ns == 4


def test_margin_is_recomputed_every_few_answers_once_warm() -> None:
    r = ReplyCost(window=64, percentile=100, every=8)
    for _ in range(8):
        r.observe(10)
    assert r.margin_ns == 10
    r.observe(50)
    assert r.margin_ns == 10  # not yet
    for _ in range(7):
        r.observe(10)
    assert r.margin_ns == 50


@pytest.mark.parametrize("kw", [{"window": 0}, {"every": 0}, {"percentile": 0}])
def test_bad_settings(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ReplyCost(**kw)  # type: ignore[arg-type]
