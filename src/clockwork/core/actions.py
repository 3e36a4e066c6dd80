"""Actions the controller sends to workers, and the results workers send back (DESIGN.md s.3)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from clockwork.core.ids import DeviceId


# per-request value: Final fields and a written-out __init__, not frozen=True: a
# compiled-build accommodation (core/requests.py says why)
@dataclass(slots=True, init=False, unsafe_hash=True)
class LoadWeights:
    """Copy a model's weights from host memory into free pages of the device's weights cache."""

    action_id: Final[int]
    device: Final[DeviceId]
    model: Final[str]
    earliest_ns: Final[int]
    latest_ns: Final[int]
    expected_duration_ns: Final[int]

    def __init__(
        self,
        action_id: int,
        device: DeviceId,
        model: str,
        earliest_ns: int,
        latest_ns: int,
        expected_duration_ns: int,
    ) -> None:
        self.action_id = action_id
        self.device = device
        self.model = model
        self.earliest_ns = earliest_ns
        self.latest_ns = latest_ns
        self.expected_duration_ns = expected_duration_ns


@dataclass(slots=True, init=False, unsafe_hash=True)
class Infer:
    """Run one batched inference; ``request_ids`` fill the batch, padded to ``batch_size``.
    With no ``request_ids`` it is a probe: an all-padding batch the controller runs only to
    measure it."""

    action_id: Final[int]
    device: Final[DeviceId]
    model: Final[str]
    batch_size: Final[int]
    request_ids: Final[tuple[int, ...]]
    earliest_ns: Final[int]
    latest_ns: Final[int]
    expected_duration_ns: Final[int]

    def __init__(
        self,
        action_id: int,
        device: DeviceId,
        model: str,
        batch_size: int,
        request_ids: tuple[int, ...],
        earliest_ns: int,
        latest_ns: int,
        expected_duration_ns: int,
    ) -> None:
        self.action_id = action_id
        self.device = device
        self.model = model
        self.batch_size = batch_size
        self.request_ids = request_ids
        self.earliest_ns = earliest_ns
        self.latest_ns = latest_ns
        self.expected_duration_ns = expected_duration_ns


@dataclass(slots=True, init=False, unsafe_hash=True)
class EvictWeights:
    """Free the pages that a model occupies on a device. Runs at once, on no executor."""

    action_id: Final[int]
    device: Final[DeviceId]
    model: Final[str]

    def __init__(self, action_id: int, device: DeviceId, model: str) -> None:
        self.action_id = action_id
        self.device = device
        self.model = model


Action = LoadWeights | Infer | EvictWeights


class ActionStatus(enum.Enum):
    """Why an action ended as it did. Specific reasons, never bare integers."""

    SUCCESS = "SUCCESS"
    TOO_EARLY = "TOO_EARLY"  # offered to an executor before earliest with no way to wait
    TOO_LATE = "TOO_LATE"  # dequeued after latest: refused without running
    WEIGHTS_NOT_PRESENT = "WEIGHTS_NOT_PRESENT"
    WEIGHTS_ALREADY_PRESENT = "WEIGHTS_ALREADY_PRESENT"
    INSUFFICIENT_PAGES = "INSUFFICIENT_PAGES"
    WEIGHTS_CHANGED_DURING_EXEC = "WEIGHTS_CHANGED_DURING_EXEC"
    INVALID_INPUT = "INVALID_INPUT"
    UNKNOWN_MODEL = "UNKNOWN_MODEL"
    UNKNOWN_DEVICE = "UNKNOWN_DEVICE"
    UNSUPPORTED_BATCH_SIZE = "UNSUPPORTED_BATCH_SIZE"
    INVALID_WINDOW = "INVALID_WINDOW"
    EXECUTION_ERROR = "EXECUTION_ERROR"


@dataclass(slots=True, init=False, unsafe_hash=True)
class ActionResult:
    """What a worker says about one action, with its own timestamps (converted to the controller's
    clock by whoever carries the message).

    ``began_ns``/``ended_ns`` bound the action's execution; for a refused action both equal the
    moment of refusal. ``exec_ns`` is the measured duration of the execution phase alone; the
    optional copy phases are 0 where a backend has none.
    """

    action_id: Final[int]
    device: Final[DeviceId]
    model: Final[str]
    status: Final[ActionStatus]
    received_ns: Final[int]
    began_ns: Final[int]
    ended_ns: Final[int]
    exec_ns: Final[int]
    input_copy_ns: Final[int]
    output_copy_ns: Final[int]
    detail: Final[str]

    def __init__(
        self,
        action_id: int,
        device: DeviceId,
        model: str,
        status: ActionStatus,
        received_ns: int,
        began_ns: int,
        ended_ns: int,
        exec_ns: int = 0,
        input_copy_ns: int = 0,
        output_copy_ns: int = 0,
        detail: str = "",
    ) -> None:
        self.action_id = action_id
        self.device = device
        self.model = model
        self.status = status
        self.received_ns = received_ns
        self.began_ns = began_ns
        self.ended_ns = ended_ns
        self.exec_ns = exec_ns
        self.input_copy_ns = input_copy_ns
        self.output_copy_ns = output_copy_ns
        self.detail = detail

    @property
    def ok(self) -> bool:
        return self.status is ActionStatus.SUCCESS
