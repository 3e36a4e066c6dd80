"""The contract between a workload and whatever drives it (simulator or load generator)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Protocol


# per-request value: Final fields and a written-out __init__, not frozen=True: a
# compiled-build accommodation (core/requests.py says why)
@dataclass(slots=True, init=False, unsafe_hash=True)
class Arrival:
    """One request to send: at ``time_ns`` (from the start of the run), for ``model``, with a
    relative deadline ``slo_ns`` and a priority."""

    time_ns: Final[int]
    model: Final[str]
    slo_ns: Final[int]
    priority: Final[int]

    def __init__(self, time_ns: int, model: str, slo_ns: int, priority: int = 0) -> None:
        self.time_ns = time_ns
        self.model = model
        self.slo_ns = slo_ns
        self.priority = priority


class Workload(Protocol):
    """A source of arrivals.

    ``arrivals()`` yields the open-loop part in nondecreasing ``time_ns``, lazily (an 8-hour
    trace is never materialised). Closed-loop workloads also react to responses: ``on_response``
    is called once per answered request and may return the next arrival of that client (its
    ``time_ns`` is never before ``now_ns``).
    """

    def describe(self) -> dict[str, object]:
        """Parameters and provenance for reports (the trace file; whether it is synthetic)."""
        ...

    def arrivals(self) -> Iterator[Arrival]: ...

    def on_response(self, arrival: Arrival, now_ns: int) -> Arrival | None: ...
