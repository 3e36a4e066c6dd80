"""Copies paced by the loop's turn: however many requests copy at once, a turn of the loop copies
about one step, so a timer due meanwhile waits for one step, not one per request."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clockwork.frontend.pacing import Pacer, turn_budget

KIB = 1024


async def _copy(pacer: Pacer, total: int, chunk: int, log: list[int]) -> None:
    done = 0
    while done < total:
        n = min(chunk, total - done)
        log.append(n)  # "copied" n bytes, then told the pacer
        done += n
        await pacer.copied(n)


async def _per_turn(copiers: int, total: int, chunk: int, step: int) -> list[int]:
    """Bytes copied in each turn of the loop while ``copiers`` copy ``total`` bytes each."""
    loop = asyncio.get_running_loop()
    log: list[int] = []
    turns: list[int] = []
    stop = False

    def tick() -> None:  # runs once per turn of the loop
        turns.append(sum(log))
        log.clear()
        if not stop:
            loop.call_soon(tick)

    loop.call_soon(tick)
    pacers = [Pacer(step) for _ in range(copiers)]
    await asyncio.gather(*(_copy(p, total, chunk, log) for p in pacers))
    stop = True
    await asyncio.sleep(0)
    turns.append(sum(log))
    return turns


@settings(max_examples=40, deadline=None)
@given(
    copiers=st.integers(1, 6),
    chunk_kib=st.integers(1, 128),
    step_kib=st.integers(16, 512),
    chunks=st.integers(1, 40),
)
def test_a_turn_copies_about_one_step_whatever_the_number_of_copies(
    copiers: int, chunk_kib: int, step_kib: int, chunks: int
) -> None:
    chunk, step = chunk_kib * KIB, step_kib * KIB
    total = chunk * chunks
    turns = asyncio.run(_per_turn(copiers, total, chunk, step))
    # everything is copied, by every copier (none is starved)
    assert sum(turns) == copiers * total
    # a turn: the step, passed by at most one chunk of each copier that found it unspent
    assert max(turns) <= step + copiers * chunk


def test_four_bodies_at_once_share_one_step_per_turn() -> None:
    # the JSON bomb's case: four large bodies buffered, read 64 KiB at a time
    turns = asyncio.run(_per_turn(4, 4 * 2**20, 64 * KIB, 256 * KIB))
    # per request it was 4 x 256 KiB a turn; now one step, and in the first turn the others'
    # first chunks besides
    assert max(turns) <= 256 * KIB + 3 * 64 * KIB
    assert sorted(turns)[len(turns) // 2] == 256 * KIB
    assert sum(turns) == 16 * 2**20


def test_each_loop_has_a_budget_of_its_own() -> None:
    async def twice() -> bool:
        loop = asyncio.get_running_loop()
        return turn_budget(loop) is turn_budget(loop)

    assert asyncio.run(twice())

    async def spend() -> int:
        await Pacer(KIB).copied(KIB // 2)  # half a step: no wait, and left spent
        return turn_budget(asyncio.get_running_loop()).spent

    async def spent_on_a_new_loop() -> int:
        return turn_budget(asyncio.get_running_loop()).spent

    assert asyncio.run(spend()) == KIB // 2
    assert asyncio.run(spent_on_a_new_loop()) == 0  # not carried over


def test_a_closed_loop_is_not_kept_alive_by_its_budget() -> None:
    import gc
    import weakref

    loop = asyncio.new_event_loop()
    loop.run_until_complete(Pacer(KIB).copied(KIB // 2))
    gone = weakref.ref(loop)
    loop.close()
    del loop
    gc.collect()
    assert gone() is None


def test_a_step_must_be_positive() -> None:
    with pytest.raises(ValueError, match="step_bytes"):
        Pacer(0)


@settings(max_examples=30, deadline=None)
@given(size_kib=st.integers(0, 2048), at_kib=st.integers(0, 64), step_kib=st.integers(16, 512))
def test_a_copy_is_exact_and_cut_into_steps(size_kib: int, at_kib: int, step_kib: int) -> None:
    src = bytes(range(256)) * (size_kib * 4)
    at, step = at_kib * KIB, step_kib * KIB

    async def copy() -> tuple[bytearray, list[int]]:
        loop = asyncio.get_running_loop()
        dst = bytearray(at + len(src) + 7)
        view = memoryview(dst)
        seen: list[int] = []
        done = False

        def tick() -> None:  # once per turn: how much of dst is written so far
            seen.append(_written(dst, at, src))
            if not done:
                loop.call_soon(tick)

        loop.call_soon(tick)
        await Pacer(step).copy(view, at, src)
        done = True
        return dst, seen

    dst, seen = asyncio.run(copy())
    assert dst[at : at + len(src)] == src
    assert not any(dst[:at]) and not any(dst[at + len(src) :])
    # a chunk that arrived whole is copied at most a step per turn
    assert all(b - a <= step for a, b in itertools.pairwise(seen))


def _written(dst: bytearray, at: int, src: bytes) -> int:
    """How many leading bytes of ``src`` are already in ``dst`` at ``at`` (by the step size)."""
    n = 0
    while n < len(src) and dst[at + n : at + n + KIB] == src[n : n + KIB]:
        n += KIB
    return min(n, len(src))


def test_small_copies_in_separate_turns_never_wait() -> None:
    # what a turn copied is that turn's: small bodies, one per turn, do not add up to a step
    async def run() -> int:
        loop = asyncio.get_running_loop()
        turns = 0

        def tick() -> None:
            nonlocal turns
            turns += 1

        pacer = Pacer(256 * KIB)
        for _ in range(20):
            loop.call_soon(tick)
            before = turns
            await pacer.copied(48 * KIB)  # no wait: the tick has not run
            assert turns == before
            await asyncio.sleep(0)  # the next turn
        return turns

    assert asyncio.run(run()) == 20
