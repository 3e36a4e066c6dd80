from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clockwork.core.errors import InvalidInputError
from clockwork.models.architectures import get_architecture
from clockwork.models.packing import PagePlan, pack_into_pages, pack_tensors

MIB = 1 << 20


@st.composite
def packing_problems(draw: st.DrawFn) -> tuple[list[tuple[str, int]], int, int]:
    alignment = draw(st.sampled_from([1, 4, 64, 256]))
    page = alignment * draw(st.integers(1, 64))
    sizes = draw(
        st.lists(
            st.one_of(
                st.integers(0, page),  # fits a page
                st.integers(page // 2, page),  # large but fits
                st.integers(page + 1, 4 * page),  # needs a run of pages
            ),
            max_size=40,
        )
    )
    return [(f"t{i}", n) for i, n in enumerate(sizes)], page, alignment


def _padded(nbytes: int, page: int, alignment: int) -> int:
    if nbytes > page:
        return nbytes
    return -(-nbytes // alignment) * alignment


def _check_plan(plan: PagePlan, tensors: list[tuple[str, int]]) -> None:
    page, alignment = plan.page_size_bytes, plan.alignment_bytes
    assert [(p.name, p.nbytes) for p in plan.placements] == tensors  # input order kept
    spans: list[tuple[int, int, str]] = []
    owner_of_page: dict[int, set[str]] = {}
    for p in plan.placements:
        if p.nbytes == 0:
            assert p.pages == 0
            continue
        assert 0 <= p.page < plan.num_pages
        if p.nbytes > page:  # the one exception: a run of whole pages of its own
            assert p.offset_bytes == 0
            assert p.pages == math.ceil(p.nbytes / page)
            assert p.page + p.pages <= plan.num_pages
        else:  # never spans a page boundary
            assert p.pages == 1
            assert p.offset_bytes % alignment == 0
            assert p.offset_bytes + p.nbytes <= page
        start = p.page * page + p.offset_bytes
        spans.append((start, start + p.nbytes, p.name))
        for k in range(p.page, p.page + p.pages):
            owner_of_page.setdefault(k, set()).add(p.name)
    spans.sort()
    for (_, end, a), (start, _, b) in itertools.pairwise(spans):
        assert end <= start, f"{a} overlaps {b}"
    for p in plan.placements:
        if p.nbytes > page:
            for k in range(p.page, p.page + p.pages):
                assert owner_of_page[k] == {p.name}
    total = sum(_padded(n, page, alignment) for _, n in tensors)
    assert plan.num_pages >= math.ceil(sum(n for _, n in tensors) / page)
    assert plan.num_pages <= 2 * math.ceil(total / page)
    assert all(k in owner_of_page for k in range(plan.num_pages))  # no empty page


@settings(max_examples=300, deadline=None)
@given(packing_problems())
def test_plan_invariants(problem: tuple[list[tuple[str, int]], int, int]) -> None:
    tensors, page, alignment = problem
    plan = pack_into_pages(tensors, page, alignment)
    _check_plan(plan, tensors)
    for name, _ in tensors:
        assert plan.placement(name).name == name


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 50), st.integers(2, 8))
def test_equal_fractions_pack_exactly(count: int, per_page: int) -> None:
    page = 1024 * per_page
    plan = pack_into_pages([(f"t{i}", 1024) for i in range(count)], page, 256)
    assert plan.num_pages == math.ceil(count / per_page)


def test_worked_example() -> None:
    plan = pack_into_pages([("a", 300), ("b", 700), ("c", 2500), ("d", 10), ("e", 0)], 1024, 256)
    # c (largest) takes pages 0-2 alone; b opens page 3; a and d do not fit beside b (768+512)...
    assert plan.placement("c") == plan.placements[2]
    assert (plan.placement("c").page, plan.placement("c").pages) == (0, 3)
    assert (plan.placement("b").page, plan.placement("b").offset_bytes) == (3, 0)
    assert (plan.placement("a").page, plan.placement("a").offset_bytes) == (4, 0)
    assert (plan.placement("d").page, plan.placement("d").offset_bytes) == (3, 768)
    assert plan.placement("e").pages == 0
    assert plan.num_pages == 5
    assert plan.total_bytes == 3510
    assert plan.capacity_bytes == 5 * 1024


def test_resnet50_fits_seven_pages_of_16_mib() -> None:
    """As Clockwork's ResNet50 (102 MB in 7 pages of 16 MiB)."""
    state = get_architecture("resnet50").build_skeleton().state_dict()  # meta: sizes only
    plan = pack_tensors(state, 16 * MIB)
    assert plan.num_pages == 7
    assert plan.total_bytes == sum(t.nbytes for t in state.values())


def test_empty_and_invalid() -> None:
    assert pack_into_pages([], 1024).num_pages == 0
    with pytest.raises(InvalidInputError, match="multiple of the alignment"):
        pack_into_pages([("a", 1)], 1000, 256)
    with pytest.raises(InvalidInputError, match="positive"):
        pack_into_pages([("a", 1)], 0, 1)
    with pytest.raises(InvalidInputError, match="listed twice"):
        pack_into_pages([("a", 1), ("a", 2)], 1024)
    with pytest.raises(InvalidInputError, match="integer >= 0"):
        pack_into_pages([("a", -1)], 1024)
    with pytest.raises(InvalidInputError, match="no tensor 'z'"):
        pack_into_pages([("a", 1)], 1024).placement("z")
