"""Columnar request and action logs: one row per request / per action, appended cheaply.

Rows are packed into one ``bytearray`` per log (8 bytes a number, row after row; one ``pack`` per
row costs half of appending each number to its own array) rather than lists of objects, so a run
of tens of millions of requests stays within memory; ``table()`` splits them into columns. Strings
(model, device, status) are interned into small code tables.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from clockwork.core.actions import Action, EvictWeights, Infer
from clockwork.core.ids import DeviceId

#: the status of a request or action still unanswered when a log is closed
UNANSWERED: Final = "UNANSWERED"


class _Codes:
    """Interns strings to small integer codes."""

    __slots__ = ("index", "names")

    def __init__(self) -> None:
        self.names: list[str] = []
        self.index: dict[str, int] = {}

    def code(self, name: str) -> int:
        c = self.index.get(name)
        if c is None:
            c = len(self.names)
            self.names.append(name)
            self.index[name] = c
        return c


@dataclass(frozen=True, slots=True)
class RequestTable:
    """A finished request log as numpy columns. Times in ns from the start of the run.

    ``response_ns`` is when the answer was given; ``status`` indexes ``status_names``; ``model``
    indexes ``model_names``; ``batch_size`` and ``action_id`` are 0 / -1 for requests that no Infer
    served; ``cold_start`` is 1 when the model was on no device (nor loading) at arrival.
    """

    request_id: npt.NDArray[np.int64]
    model: npt.NDArray[np.int64]
    arrival_ns: npt.NDArray[np.int64]
    deadline_ns: npt.NDArray[np.int64]
    response_ns: npt.NDArray[np.int64]
    status: npt.NDArray[np.int64]
    batch_size: npt.NDArray[np.int64]
    action_id: npt.NDArray[np.int64]
    cold_start: npt.NDArray[np.int64]
    model_names: tuple[str, ...]
    status_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.request_id)


@dataclass(frozen=True, slots=True)
class ActionTable:
    """A finished action log as numpy columns.

    ``kind`` indexes ``kind_names`` (LoadWeights, Infer, EvictWeights); ``sent_ns`` is when the
    controller emitted it; ``began_ns``/``ended_ns`` as the worker reported them (``-1`` if the
    action never finished, e.g. its worker was lost); ``expected_ns`` the controller's estimate;
    ``actual_ns`` the measured execution duration (0 for refused actions).
    """

    action_id: npt.NDArray[np.int64]
    kind: npt.NDArray[np.int64]
    device: npt.NDArray[np.int64]
    model: npt.NDArray[np.int64]
    batch_size: npt.NDArray[np.int64]
    requests: npt.NDArray[np.int64]
    sent_ns: npt.NDArray[np.int64]
    earliest_ns: npt.NDArray[np.int64]
    latest_ns: npt.NDArray[np.int64]
    expected_ns: npt.NDArray[np.int64]
    began_ns: npt.NDArray[np.int64]
    ended_ns: npt.NDArray[np.int64]
    actual_ns: npt.NDArray[np.int64]
    status: npt.NDArray[np.int64]
    kind_names: tuple[str, ...]
    device_names: tuple[str, ...]
    model_names: tuple[str, ...]
    status_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.action_id)


# Final: compiled code reads them from a C static
_REQUEST_ROW: Final = struct.Struct("<9q")
_ACTION_ROW: Final = struct.Struct("<14q")


def _columns(rows: bytearray, width: int) -> list[npt.NDArray[np.int64]]:
    """The packed rows as ``width`` contiguous int64 columns (copies: the log may grow on)."""
    m = np.frombuffer(rows, dtype="<i8").reshape(-1, width)
    # always copies (a one-row column slice would otherwise stay a view that pins the bytearray)
    columns = [m[:, k].copy() for k in range(width)]
    del m  # the view pins the bytearray's size; release it before anyone appends again
    return columns


class RequestLog:
    """Appends one row per answered request."""

    def __init__(self) -> None:
        self._rows = bytearray()
        self.models = _Codes()
        self.statuses = _Codes()

    def append(
        self,
        request_id: int,
        model: str,
        arrival_ns: int,
        deadline_ns: int,
        response_ns: int,
        status: str,
        batch_size: int,
        action_id: int,
        cold_start: bool,
    ) -> None:
        self._rows += _REQUEST_ROW.pack(
            request_id,
            self.models.code(model),
            arrival_ns,
            deadline_ns,
            response_ns,
            self.statuses.code(status),
            batch_size,
            action_id,
            1 if cold_start else 0,
        )

    def __len__(self) -> int:
        return len(self._rows) // _REQUEST_ROW.size

    def table(self) -> RequestTable:
        c = _columns(self._rows, 9)
        return RequestTable(
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            c[6],
            c[7],
            c[8],
            model_names=tuple(self.models.names),
            status_names=tuple(self.statuses.names),
        )


class ActionLog:
    """Appends one row per action, when its result arrives (or when it is abandoned)."""

    def __init__(self) -> None:
        self._rows = bytearray()
        self.kinds = _Codes()
        self.devices = _Codes()
        self.models = _Codes()
        self.statuses = _Codes()
        # codes by action type and by DeviceId, so that ``append_action`` formats neither
        self._kind_codes: dict[type, int] = {}
        self._device_codes: dict[DeviceId, int] = {}

    def append(
        self,
        action_id: int,
        kind: str,
        device: str,
        model: str,
        batch_size: int,
        requests: int,
        sent_ns: int,
        earliest_ns: int,
        latest_ns: int,
        expected_ns: int,
        began_ns: int,
        ended_ns: int,
        actual_ns: int,
        status: str,
    ) -> None:
        self._rows += _ACTION_ROW.pack(
            action_id,
            self.kinds.code(kind),
            self.devices.code(device),
            self.models.code(model),
            batch_size,
            requests,
            sent_ns,
            earliest_ns,
            latest_ns,
            expected_ns,
            began_ns,
            ended_ns,
            actual_ns,
            self.statuses.code(status),
        )

    def append_action(
        self,
        action: Action,
        sent_ns: int,
        began_ns: int,
        ended_ns: int,
        actual_ns: int,
        status: str,
        origin_ns: int = 0,
    ) -> None:
        """One row for ``action``; ``sent_ns`` and its window are shifted by ``origin_ns`` (the
        run's start on the controller's clock); ``began_ns``/``ended_ns`` are taken as given."""
        # one row per action of a run: the columns are filled here directly (the same values
        # as ``append`` gives them), with the kind and device codes cached by object
        kind = self._kind_codes.get(type(action))
        if kind is None:
            kind = self._kind_codes[type(action)] = self.kinds.code(type(action).__name__)
        device = self._device_codes.get(action.device)
        if device is None:
            device = self._device_codes[action.device] = self.devices.code(str(action.device))
        sent = sent_ns - origin_ns
        model = self.models.code(action.model)
        status_code = self.statuses.code(status)
        if isinstance(action, EvictWeights):
            row = _ACTION_ROW.pack(
                action.action_id,
                kind,
                device,
                model,
                0,
                0,
                sent,
                sent,
                sent,
                0,
                began_ns,
                ended_ns,
                0,
                status_code,
            )
        else:
            batch, requests = (
                (action.batch_size, len(action.request_ids))
                if isinstance(action, Infer)
                else (0, 0)
            )
            row = _ACTION_ROW.pack(
                action.action_id,
                kind,
                device,
                model,
                batch,
                requests,
                sent,
                action.earliest_ns - origin_ns,
                action.latest_ns - origin_ns,
                action.expected_duration_ns,
                began_ns,
                ended_ns,
                actual_ns,
                status_code,
            )
        self._rows += row

    def __len__(self) -> int:
        return len(self._rows) // _ACTION_ROW.size

    def table(self) -> ActionTable:
        c = _columns(self._rows, 14)
        return ActionTable(
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            c[6],
            c[7],
            c[8],
            c[9],
            c[10],
            c[11],
            c[12],
            c[13],
            kind_names=tuple(self.kinds.names),
            device_names=tuple(self.devices.names),
            model_names=tuple(self.models.names),
            status_names=tuple(self.statuses.names),
        )
