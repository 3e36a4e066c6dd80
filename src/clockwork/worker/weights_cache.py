"""A device's weights cache: one pre-allocated pool cut into fixed-size pages (DESIGN.md s.4).

The pool is ONE ``uint8`` tensor of ``num_pages * page_size_bytes`` bytes, allocated once when
the cache is made: on CUDA a single device tensor, on the CPU host memory. Nothing is allocated
or freed afterwards; a model's weights are copied into pages taken from a free list, and its
parameters are *views* into those pages (:meth:`WeightsCache.view`).

A model arrives with a :class:`~clockwork.models.packing.PagePlan` (which tensor goes on which of
the model's own pages 0..n-1). :meth:`WeightsCache.place` maps those plan pages onto cache pages:
pages holding small tensors go anywhere (the cache pages need not be contiguous), but a tensor
larger than a page occupies a run of consecutive plan pages and so needs a run of consecutive
cache pages. Runs are placed first (longest first, lowest free run that fits), then single
pages (lowest free index first). Either every page is found or nothing changes.

The worker runtime (``DeviceState``) counts pages too and refuses a load that does not fit
before it reaches the backend; :class:`InsufficientPagesError` here is the backstop.

Thread safety: ``place`` and ``release`` take a lock, so a load on one thread and an eviction
on another are safe; views of a model's pages stay valid until that model is released.
"""

from __future__ import annotations

import bisect
import threading

import torch

from clockwork.core.errors import ClockworkError
from clockwork.models.packing import PagePlan


class WeightsCacheError(ClockworkError):
    """A misuse of the cache (a model placed twice, a view outside the pool, ...)."""


class InsufficientPagesError(WeightsCacheError):
    """The cache does not have the free pages (or the consecutive run) a model needs."""


class WeightsCache:
    """``num_pages`` pages of ``page_size_bytes`` in one tensor on ``device``."""

    def __init__(
        self,
        device: torch.device | str,
        page_size_bytes: int,
        num_pages: int,
        *,
        pin_memory: bool = False,
    ) -> None:
        if page_size_bytes <= 0 or num_pages <= 0:
            raise WeightsCacheError(
                f"page size and page count must be positive, got {page_size_bytes} bytes x "
                f"{num_pages} pages"
            )
        self.device = torch.device(device)
        self.page_size_bytes = page_size_bytes
        self.num_pages = num_pages
        # The one allocation. On the CPU this is lazily committed host memory (untouched pages
        # cost nothing until a load writes them); ``pin_memory`` pins it (CUDA builds only).
        self.pool = torch.empty(
            num_pages * page_size_bytes,
            dtype=torch.uint8,
            device=self.device,
            pin_memory=pin_memory and self.device.type == "cpu",
        )
        self._free: list[int] = list(range(num_pages))  # sorted
        self._owned: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ accounting

    @property
    def free_pages(self) -> int:
        return len(self._free)

    @property
    def used_pages(self) -> int:
        return self.num_pages - len(self._free)

    @property
    def capacity_bytes(self) -> int:
        return self.num_pages * self.page_size_bytes

    def models(self) -> tuple[str, ...]:
        """Models that hold pages, in the order they were placed."""
        with self._lock:
            return tuple(self._owned)

    def pages_of(self, model: str) -> list[int]:
        """The cache pages of ``model``: element ``i`` is where its plan page ``i`` lives."""
        with self._lock:
            pages = self._owned.get(model)
            if pages is None:
                raise WeightsCacheError(f"model {model!r} holds no pages in this cache")
            return list(pages)

    # ------------------------------------------------------------------ place / release

    def place(self, model: str, plan: PagePlan) -> list[int]:
        """Take ``plan.num_pages`` free pages for ``model``; element ``i`` of the result is the
        cache page of plan page ``i``. Multi-page tensors get consecutive cache pages."""
        if plan.page_size_bytes != self.page_size_bytes:
            raise WeightsCacheError(
                f"model {model!r}: plan is for {plan.page_size_bytes}-byte pages, this cache has "
                f"{self.page_size_bytes}-byte pages"
            )
        runs = sorted(
            ((p.page, p.pages) for p in plan.placements if p.pages > 1),
            key=lambda r: (-r[1], r[0]),
        )
        with self._lock:
            if model in self._owned:
                raise WeightsCacheError(f"model {model!r} already holds pages in this cache")
            if plan.num_pages > len(self._free):
                raise InsufficientPagesError(
                    f"model {model!r} needs {plan.num_pages} pages, only {len(self._free)} of "
                    f"{self.num_pages} are free"
                )
            free = list(self._free)
            mapping: dict[int, int] = {}
            for first, length in runs:
                start = _find_run(free, length)
                if start is None:
                    raise InsufficientPagesError(
                        f"model {model!r} has a tensor of {length} pages and the cache has no "
                        f"{length} consecutive free pages ({len(self._free)} free in all)"
                    )
                i = bisect.bisect_left(free, start)
                del free[i : i + length]
                for k in range(length):
                    mapping[first + k] = start + k
            singles = [p for p in range(plan.num_pages) if p not in mapping]
            if len(singles) > len(free):  # cannot happen given the count check; kept honest
                raise InsufficientPagesError(
                    f"model {model!r} needs {plan.num_pages} pages, only {len(self._free)} free"
                )
            for p, cache_page in zip(singles, free, strict=False):
                mapping[p] = cache_page
            del free[: len(singles)]
            pages = [mapping[p] for p in range(plan.num_pages)]
            self._free = free
            self._owned[model] = pages
            return list(pages)

    def release(self, model: str) -> int:
        """Return ``model``'s pages to the free list; how many were freed."""
        with self._lock:
            pages = self._owned.pop(model, None)
            if pages is None:
                raise WeightsCacheError(f"model {model!r} holds no pages in this cache")
            for p in pages:
                bisect.insort(self._free, p)
            return len(pages)

    # ------------------------------------------------------------------ views

    def view(
        self, page: int, offset_bytes: int, dtype: torch.dtype, shape: tuple[int, ...] | torch.Size
    ) -> torch.Tensor:
        """A tensor of ``dtype`` and ``shape`` over the pool from ``offset_bytes`` into cache
        page ``page`` (it may run on into the following pages). Shares the pool's memory."""
        numel = 1
        for d in shape:
            numel *= int(d)
        nbytes = numel * dtype.itemsize
        if not 0 <= page < self.num_pages or not 0 <= offset_bytes < self.page_size_bytes:
            raise WeightsCacheError(
                f"page {page}, offset {offset_bytes} is outside a cache of {self.num_pages} "
                f"pages of {self.page_size_bytes} bytes"
            )
        start = page * self.page_size_bytes + offset_bytes
        if start % dtype.itemsize:
            raise WeightsCacheError(
                f"offset {start} bytes is not aligned to {dtype} ({dtype.itemsize} bytes)"
            )
        if start + nbytes > self.capacity_bytes:
            raise WeightsCacheError(
                f"{nbytes} bytes from page {page} offset {offset_bytes} run past the cache end"
            )
        return self.pool[start : start + nbytes].view(dtype).view(tuple(shape))


def _find_run(free: list[int], length: int) -> int | None:
    """The lowest start of ``length`` consecutive indices in sorted ``free``, or None."""
    run_start = 0
    for i in range(len(free)):
        if i > 0 and free[i] != free[i - 1] + 1:
            run_start = i
        if i - run_start + 1 == length:
            return free[run_start]
    return None
