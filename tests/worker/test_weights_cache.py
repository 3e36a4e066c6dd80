"""The weights cache: one pool, page accounting, consecutive runs for oversized tensors, views."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clockwork.models.packing import PagePlan, pack_into_pages
from clockwork.worker.weights_cache import (
    InsufficientPagesError,
    WeightsCache,
    WeightsCacheError,
)

PAGE = 1024


def plan(*sizes: int) -> PagePlan:
    return pack_into_pages([(f"t{i}", n) for i, n in enumerate(sizes)], PAGE)


def pages_plan(n: int) -> PagePlan:
    """A plan of ``n`` single pages (each tensor fills a page)."""
    return plan(*([PAGE] * n))


def test_one_pool_allocated_up_front() -> None:
    cache = WeightsCache("cpu", PAGE, 8)
    assert cache.pool.dtype == torch.uint8
    assert cache.pool.numel() == 8 * PAGE
    assert (cache.free_pages, cache.used_pages) == (8, 0)


def test_exact_fit_then_no_fit_changes_nothing() -> None:
    cache = WeightsCache("cpu", PAGE, 4)
    assert cache.place("a", pages_plan(4)) == [0, 1, 2, 3]
    assert (cache.free_pages, cache.used_pages) == (0, 4)
    with pytest.raises(InsufficientPagesError, match=r"'b' needs 1 pages, only 0 of 4"):
        cache.place("b", pages_plan(1))
    assert cache.models() == ("a",)
    assert cache.free_pages == 0


def test_too_large_for_an_empty_cache() -> None:
    cache = WeightsCache("cpu", PAGE, 3)
    with pytest.raises(InsufficientPagesError):
        cache.place("a", pages_plan(4))
    assert cache.free_pages == 3
    assert cache.models() == ()


def test_release_and_reuse() -> None:
    cache = WeightsCache("cpu", PAGE, 4)
    assert cache.place("a", pages_plan(2)) == [0, 1]
    assert cache.place("b", pages_plan(2)) == [2, 3]
    assert cache.release("a") == 2
    assert (cache.free_pages, cache.used_pages) == (2, 2)
    assert cache.place("c", pages_plan(2)) == [0, 1]
    with pytest.raises(WeightsCacheError, match="'a' holds no pages"):
        cache.release("a")


def test_pages_need_not_be_contiguous() -> None:
    cache = WeightsCache("cpu", PAGE, 5)
    for name in "abcde":
        cache.place(name, pages_plan(1))
    cache.release("b")
    cache.release("d")
    assert cache.place("x", pages_plan(2)) == [1, 3]


def test_oversized_tensor_gets_consecutive_pages() -> None:
    cache = WeightsCache("cpu", PAGE, 6)
    for name in "abcdef":
        cache.place(name, pages_plan(1))
    for name in "acdf":
        cache.release(name)  # free: 0, 2, 3, 5
    p = plan(2 * PAGE, 100)  # t0 spans plan pages 0-1, t1 is on plan page 2
    assert p.placement("t0").pages == 2
    pages = cache.place("x", p)
    big = p.placement("t0")
    assert pages[big.page : big.page + 2] == [2, 3]
    assert pages[p.placement("t1").page] == 0
    # a view across the two pages writes exactly those bytes of the pool
    view = cache.view(pages[big.page], 0, torch.float32, (2 * PAGE // 4,))
    view.copy_(torch.arange(2 * PAGE // 4, dtype=torch.float32))
    raw = cache.pool[2 * PAGE : 4 * PAGE].view(torch.float32)
    assert torch.equal(raw, torch.arange(2 * PAGE // 4, dtype=torch.float32))


def test_enough_pages_but_no_consecutive_run() -> None:
    cache = WeightsCache("cpu", PAGE, 5)
    for name in "abcde":
        cache.place(name, pages_plan(1))
    for name in "ace":
        cache.release(name)  # free: 0, 2, 4
    with pytest.raises(InsufficientPagesError, match="2 consecutive"):
        cache.place("x", plan(2 * PAGE))
    assert cache.free_pages == 3


def test_place_twice_and_page_size_mismatch() -> None:
    cache = WeightsCache("cpu", PAGE, 4)
    cache.place("a", pages_plan(1))
    with pytest.raises(WeightsCacheError, match="already holds"):
        cache.place("a", pages_plan(1))
    with pytest.raises(WeightsCacheError, match="2048-byte pages"):
        cache.place("b", pack_into_pages([("t", 10)], 2 * PAGE))


def test_views_share_the_pool_and_check_alignment_and_bounds() -> None:
    cache = WeightsCache("cpu", PAGE, 2)
    v = cache.view(1, 256, torch.int64, (2, 3))
    v.fill_(7)
    assert v.data_ptr() == cache.pool.data_ptr() + PAGE + 256
    assert torch.equal(
        cache.pool[PAGE + 256 : PAGE + 256 + 48].view(torch.int64),
        torch.full((6,), 7, dtype=torch.int64),
    )
    scalar = cache.view(0, 0, torch.int64, ())
    assert scalar.shape == ()
    with pytest.raises(WeightsCacheError, match="not aligned"):
        cache.view(0, 2, torch.float32, (4,))
    with pytest.raises(WeightsCacheError, match="past the cache end"):
        cache.view(1, 0, torch.float32, (PAGE,))
    with pytest.raises(WeightsCacheError, match="outside"):
        cache.view(2, 0, torch.uint8, (1,))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.lists(st.integers(1, 3 * PAGE), min_size=1, max_size=4)),
        max_size=25,
    )
)
def test_accounting_under_random_place_release(ops: list[tuple[bool, list[int]]]) -> None:
    cache = WeightsCache("cpu", PAGE, 12)
    held: dict[str, tuple[PagePlan, list[int]]] = {}
    for i, (release, sizes) in enumerate(ops):
        if release and held:
            name = sorted(held)[i % len(held)]
            cache.release(name)
            del held[name]
            continue
        p = plan(*sizes)
        try:
            pages = cache.place(f"m{i}", p)
        except InsufficientPagesError:
            continue
        assert len(pages) == p.num_pages
        for pl in p.placements:  # oversized tensors sit on consecutive cache pages
            run = pages[pl.page : pl.page + pl.pages]
            assert run == list(range(run[0], run[0] + pl.pages)) if run else True
        held[f"m{i}"] = (p, pages)
        all_pages = [q for _, ps in held.values() for q in ps]
        assert len(all_pages) == len(set(all_pages))
        assert cache.used_pages == len(all_pages)
        assert cache.free_pages + cache.used_pages == 12
