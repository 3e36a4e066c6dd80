"""Inference requests as the scheduler sees them, and the one response each of them gets."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final


class ResponseStatus(enum.Enum):
    """How a request ended. Every request ends in exactly one of these."""

    SUCCESS = "SUCCESS"  # result delivered inside the deadline
    LATE = "LATE"  # result delivered, but after the deadline (a miss)
    DEADLINE_INFEASIBLE = "DEADLINE_INFEASIBLE"  # refused at arrival: no plan could meet it
    OVERLOADED = "OVERLOADED"  # accepted, then refused: the devices could not fit it in time
    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
    MODEL_REMOVED = "MODEL_REMOVED"  # the model was unregistered while the request waited
    INVALID_INPUT = "INVALID_INPUT"
    WORKER_LOST = "WORKER_LOST"  # its device went away and no other could serve it in time
    EXECUTION_FAILED = "EXECUTION_FAILED"  # the worker failed it and no retry was possible
    WITHDRAWN = "WITHDRAWN"  # its caller stopped waiting before it ran (``RequestsWithdrawn``)

    @property
    def is_success(self) -> bool:
        return self is ResponseStatus.SUCCESS

    @property
    def delivered_result(self) -> bool:
        return self is ResponseStatus.SUCCESS or self is ResponseStatus.LATE


# How the modules that mypyc compiles (mypyc_modules.txt) are written, where that differs from
# plain Python; the other places point here. Each was measured by removing it (BENCHMARKS.md
# s.27: instructions inside the simulation, Azure replay at load factor 0.7) and kept because it
# pays at least 2% of a compiled run:
# - Values made per request or per action (the 13 in tests/core/test_value_inits.py) write
#   their __init__ out, with Final fields, where other values are frozen dataclasses: a
#   dataclass's generated __init__ is never compiled, and a frozen one sets each field through
#   object.__setattr__ (+56% without). The test keeps each __init__ in step with the fields.
# - Functions of other modules called per event are module-level Final aliases
#   (``_heappush: Final = heapq.heappush``): compiled code calls them from a C static, not
#   through a lookup in the module's dictionary per call (+3.5% without).
# - Heap entries and choices made per planning step are plain tuples whose fields are named by
#   unpacking or by Final positions, not NamedTuples: compiled, a tuple type is a C struct,
#   while each NamedTuple is built through its class's Python-level __new__ (+12.5% as
#   NamedTuples).
# - An enum member's value is read as ``_value_`` (documented by enum), not through the
#   ``value`` property, which runs Python code even in a compiled module (+2.1% without).
# Module constants read per event are Final for the aliases' reason (not measured apart).
# Not for speed: DeviceId writes its __eq__ out because, compiled, a generated one compares by
# identity (core/ids.py).
@dataclass(slots=True, init=False, unsafe_hash=True)
class InferRequest:
    """One client request. ``deadline_ns`` is absolute, on the controller's clock."""

    request_id: Final[int]
    model: Final[str]
    arrival_ns: Final[int]
    deadline_ns: Final[int]
    priority: Final[int]

    def __init__(
        self, request_id: int, model: str, arrival_ns: int, deadline_ns: int, priority: int = 0
    ) -> None:
        self.request_id = request_id
        self.model = model
        self.arrival_ns = arrival_ns
        self.deadline_ns = deadline_ns
        self.priority = priority


@dataclass(slots=True, init=False, unsafe_hash=True)
class Response:
    """The single answer to one request.

    ``action_id`` and ``batch_size`` name the Infer that produced a result (``-1``/``0`` when none);
    ``time_ns`` is when the scheduler gave the answer.
    """

    request_id: Final[int]
    model: Final[str]
    status: Final[ResponseStatus]
    time_ns: Final[int]
    detail: Final[str]
    action_id: Final[int]
    batch_size: Final[int]
    # the model was on no device (nor loading onto one) when the request arrived
    cold_start: Final[bool]

    def __init__(
        self,
        request_id: int,
        model: str,
        status: ResponseStatus,
        time_ns: int,
        detail: str = "",
        action_id: int = -1,
        batch_size: int = 0,
        cold_start: bool = False,
    ) -> None:
        self.request_id = request_id
        self.model = model
        self.status = status
        self.time_ns = time_ns
        self.detail = detail
        self.action_id = action_id
        self.batch_size = batch_size
        self.cold_start = cold_start
