"""The device kind and model profile the policies' hand-driven tests share."""

from __future__ import annotations

from clockwork.core.profile import DeviceKind, Measurement, ModelProfile

from support.units import MS

#: 10 pages of 1 MiB
KIND = DeviceKind("test-gpu", page_size_bytes=1 << 20, cache_pages=10)


def profile(
    pages: int = 4, load_ms: float = 5, exec_ms: dict[int, float] | None = None
) -> ModelProfile:
    """A model of ``pages`` pages on ``KIND``, loading in ``load_ms`` and running each batch
    size in ``exec_ms`` (default 2, 3, 4 and 6 ms for batches of 1, 2, 4 and 8)."""
    exec_ms = exec_ms or {1: 2, 2: 3, 4: 4, 8: 6}
    return ModelProfile(
        "m",
        KIND.name,
        pages << 20,
        1 << 20,
        pages,
        int(load_ms * MS),
        {b: int(t * MS) for b, t in exec_ms.items()},
        10,
        10,
        Measurement("test", "test", "test"),
    )
