"""Pack a model's tensors into fixed-size pages, as the worker's weights cache holds them.

The rule (DESIGN.md section 4): a tensor never spans two pages. The one exception is a tensor
larger than a page: it gets a run of dedicated consecutive pages, starting at offset 0 of the
first, and shares none of them with another tensor (the tail of its last page stays empty).

Tensors that fit in a page are placed first-fit decreasing: largest first (ties in input order),
each at the lowest page with room, at an offset aligned to ``alignment_bytes``. First fit leaves
at most one page half empty or worse, so the plan never needs more than
``2 * ceil(padded total / page size)`` pages. A zero-byte tensor occupies nothing: it is placed
at page 0, offset 0, with ``pages == 0``, and opens no page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from clockwork.core.errors import InvalidInputError

# cudaMalloc's alignment: every tensor starts on a boundary any kernel accepts.
DEFAULT_ALIGNMENT_BYTES = 256


class HasNbytes(Protocol):
    @property
    def nbytes(self) -> int: ...


@dataclass(frozen=True, slots=True)
class TensorPlacement:
    """Where one tensor lives: ``pages`` consecutive pages from ``page``, at ``offset_bytes``.

    ``pages`` is 1 for a tensor that fits in a page, ``ceil(nbytes / page size)`` for a larger
    one (then ``offset_bytes`` is 0), and 0 for an empty tensor.
    """

    name: str
    nbytes: int
    page: int
    offset_bytes: int
    pages: int


@dataclass(frozen=True, slots=True)
class PagePlan:
    """Placements in the order the tensors were given, and how many pages they take."""

    page_size_bytes: int
    alignment_bytes: int
    num_pages: int
    placements: tuple[TensorPlacement, ...]
    _by_name: Mapping[str, TensorPlacement] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.placements})

    def placement(self, name: str) -> TensorPlacement:
        try:
            return self._by_name[name]
        except KeyError:
            raise InvalidInputError(f"no tensor {name!r} in this page plan") from None

    @property
    def total_bytes(self) -> int:
        """Bytes of all tensors, without padding."""
        return sum(p.nbytes for p in self.placements)

    @property
    def capacity_bytes(self) -> int:
        return self.num_pages * self.page_size_bytes


def pack_into_pages(
    tensors: Sequence[tuple[str, int]],
    page_size_bytes: int,
    alignment_bytes: int = DEFAULT_ALIGNMENT_BYTES,
) -> PagePlan:
    """Assign each ``(name, nbytes)`` a page and offset; see the module docstring for the rule."""
    if page_size_bytes <= 0 or alignment_bytes <= 0 or page_size_bytes % alignment_bytes:
        raise InvalidInputError(
            f"page size {page_size_bytes} must be positive and a multiple of the alignment "
            f"{alignment_bytes} (also positive)"
        )
    seen: set[str] = set()
    for name, nbytes in tensors:
        if name in seen:
            raise InvalidInputError(f"tensor {name!r} is listed twice")
        seen.add(name)
        if not isinstance(nbytes, int) or isinstance(nbytes, bool) or nbytes < 0:
            raise InvalidInputError(
                f"tensor {name!r}: size must be an integer >= 0, got {nbytes!r}"
            )

    order = sorted(range(len(tensors)), key=lambda i: -tensors[i][1])  # stable: ties keep order
    placed: dict[int, TensorPlacement] = {}
    used: list[int] = []  # bytes used (aligned) of each page open to small tensors, by index
    open_pages: list[int] = []  # page indices matching ``used``
    num_pages = 0
    for i in order:
        name, nbytes = tensors[i]
        if nbytes == 0:
            placed[i] = TensorPlacement(name, 0, page=0, offset_bytes=0, pages=0)
        elif nbytes > page_size_bytes:
            run = -(-nbytes // page_size_bytes)
            placed[i] = TensorPlacement(name, nbytes, page=num_pages, offset_bytes=0, pages=run)
            num_pages += run
        else:
            padded = -(-nbytes // alignment_bytes) * alignment_bytes
            slot = next((k for k, u in enumerate(used) if u + padded <= page_size_bytes), len(used))
            if slot == len(used):
                used.append(0)
                open_pages.append(num_pages)
                num_pages += 1
            placed[i] = TensorPlacement(
                name, nbytes, page=open_pages[slot], offset_bytes=used[slot], pages=1
            )
            used[slot] += padded
    placements = tuple(placed[i] for i in range(len(tensors)))
    return PagePlan(
        page_size_bytes=page_size_bytes,
        alignment_bytes=alignment_bytes,
        num_pages=num_pages,
        placements=placements,
    )


def pack_tensors(
    tensors: Mapping[str, HasNbytes],
    page_size_bytes: int,
    alignment_bytes: int = DEFAULT_ALIGNMENT_BYTES,
) -> PagePlan:
    """:func:`pack_into_pages` for a mapping of tensors (a ``state_dict``), in its order."""
    return pack_into_pages(
        [(name, int(t.nbytes)) for name, t in tensors.items()], page_size_bytes, alignment_bytes
    )
