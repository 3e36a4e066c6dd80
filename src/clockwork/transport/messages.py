"""The controller <-> worker protocol as typed, immutable values (DESIGN.md s.2-4).

Every message carries ``sent_ns``: the sender's clock when it was sent (a ``Connection`` stamps it
as it writes the message, so a caller may leave it 0). Clock synchronisation (``ClockSync``) uses
the ``sent_ns`` of every message received, and ``Ping``/``Pong`` carry each side's minimum one-way
delta back to the other.

Actions reuse the core action classes as payloads (``LoadWeightsMsg.action`` is a
``LoadWeights``, and so on); an ``Infer`` travels with one ``InferInputs`` per request (or none at
all, for backends that need no inputs); a result travels as ``ActionResultMsg``, with one
``InferOutputs`` per request for a successful ``Infer``. Tensors are raw bytes with a numpy dtype
string and a shape, never pickled.

Times inside actions and results are in the *sender's* clock; converting them is the job of
whoever owns the clock estimate (``clockwork.core.clock_sync``), not of the transport.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from clockwork.core.actions import Action, ActionResult, EvictWeights, Infer, LoadWeights
from clockwork.core.events import DeviceInfo, ModelInfo
from clockwork.transport.shared_segments import locate, map_readonly

#: bumped on every incompatible change of messages or their encoding
PROTOCOL_VERSION = 2

#: numpy dtype kinds a tensor may have: bool, signed/unsigned int, float, complex, bytes, str.
#: (No objects, no structured/void types, no datetimes: plain numbers and strings only.)
TENSOR_DTYPE_KINDS = frozenset("biufcSU")


class Role(enum.Enum):
    """Which end of a connection a peer is."""

    CONTROLLER = "controller"
    WORKER = "worker"


@dataclass(frozen=True, slots=True)
class Tensor:
    """One tensor as raw bytes: a numpy dtype string (``"<f4"``), a shape, C-ordered data.
    Received, ``data`` is ``bytes``; made by ``from_array``, it may be a view of the array's
    memory (no copy: the array must not change until the tensor is sent). ``shared``: where the
    data also lies in a shared segment (its name and offset, ``shared_segments``), which a
    connection to a worker on this host sends instead of the data; received that way, ``data``
    is empty and ``to_array`` maps the segment."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes | memoryview
    shared: tuple[str, int] | None = None

    @staticmethod
    def from_array(array: npt.NDArray[np.generic]) -> Tensor:
        arr = np.ascontiguousarray(array)
        # a view, not ``tobytes``: the codec packs it as it would bytes, and a copy of a large
        # input on the controller's loop holds it up for as long
        data = arr.data.cast("B") if arr.size and arr.dtype.kind != "O" else arr.tobytes()
        return Tensor(
            dtype=arr.dtype.str,
            shape=tuple(int(d) for d in arr.shape),
            data=data,
            shared=locate(arr) if arr.dtype.kind != "O" else None,
        )

    def to_array(self, segments: dict[str, memoryview] | None = None) -> npt.NDArray[np.generic]:
        """A read-only view of ``data`` (no copy), or of the shared segment it lies in (mapped
        once per name in ``segments``). ``ValueError``/``OSError`` when that segment is gone
        or too small."""
        dtype = _NP_DTYPES.get(self.dtype)
        if dtype is None:  # parsing a dtype string costs a third of the whole conversion
            dtype = np.dtype(self.dtype)
            if len(_NP_DTYPES) < 256:
                _NP_DTYPES[self.dtype] = dtype
        if self.shared is not None and not len(self.data):
            return self._shared_array(dtype, {} if segments is None else segments)
        arr: npt.NDArray[np.generic] = np.frombuffer(self.data, dtype=dtype)
        # a one-dimensional tensor needs no reshape (which raises on a size mismatch, as before)
        return arr if arr.shape == self.shape else arr.reshape(self.shape)

    def _shared_array(
        self, dtype: np.dtype[np.generic], segments: dict[str, memoryview]
    ) -> npt.NDArray[np.generic]:
        assert self.shared is not None
        name, offset = self.shared
        view = segments.get(name)
        if view is None:
            view = segments[name] = map_readonly(name)
        count = math.prod(self.shape)
        if offset < 0 or offset + count * dtype.itemsize > len(view):
            raise ValueError(
                f"tensor of {count * dtype.itemsize} bytes at offset {offset} lies past the end "
                f"of shared segment {name} ({len(view)} bytes)"
            )
        arr: npt.NDArray[np.generic] = np.frombuffer(view, dtype=dtype, count=count, offset=offset)
        return arr.reshape(self.shape)


_NP_DTYPES: dict[str, np.dtype[np.generic]] = {}


def _arrays(
    tensors: Mapping[str, Tensor], segments: dict[str, memoryview] | None = None
) -> dict[str, npt.NDArray[np.generic]]:
    return {name: t.to_array(segments) for name, t in tensors.items()}


def _tensors(arrays: Mapping[str, npt.NDArray[np.generic]]) -> dict[str, Tensor]:
    return {name: Tensor.from_array(a) for name, a in arrays.items()}


@dataclass(frozen=True, slots=True)
class InferInputs:
    """The input tensors of one request of an ``Infer``, by input name."""

    tensors: Mapping[str, Tensor] = field(default_factory=dict)

    @staticmethod
    def from_arrays(arrays: Mapping[str, npt.NDArray[np.generic]]) -> InferInputs:
        return InferInputs(_tensors(arrays))

    def to_arrays(
        self, segments: dict[str, memoryview] | None = None
    ) -> dict[str, npt.NDArray[np.generic]]:
        return _arrays(self.tensors, segments)


@dataclass(frozen=True, slots=True)
class InferOutputs:
    """The output tensors of one request of a successful ``Infer``, by output name."""

    tensors: Mapping[str, Tensor] = field(default_factory=dict)

    @staticmethod
    def from_arrays(arrays: Mapping[str, npt.NDArray[np.generic]]) -> InferOutputs:
        return InferOutputs(_tensors(arrays))

    def to_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        return _arrays(self.tensors)


# ---- setup and liveness ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """The first message each side sends on a new connection."""

    sent_ns: int
    protocol_version: int
    role: Role
    sender_id: str


@dataclass(frozen=True, slots=True)
class GetWorkerState:
    """Controller -> worker: describe your devices and models (answered by ``WorkerState``)."""

    sent_ns: int


@dataclass(frozen=True, slots=True)
class WorkerState:
    """Worker -> controller: its devices (with resident models) and its registered models."""

    sent_ns: int
    worker: str
    devices: tuple[DeviceInfo, ...]
    models: tuple[ModelInfo, ...]


@dataclass(frozen=True, slots=True)
class RescanRepository:
    """Controller -> worker: look for models added to your repository since you started and
    serve them too (answered by ``WorkerState``, listing every model served, the new ones
    included). The reply may take seconds: new models may be profiled and read first."""

    sent_ns: int


@dataclass(frozen=True, slots=True)
class Ping:
    """Liveness and clock sync. ``min_delta_ns``: the sender's current minimum one-way delta
    (its local receive time minus our send time, ``ClockSync.local_min_delta_ns``), or None."""

    sent_ns: int
    seq: int
    min_delta_ns: int | None = None


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to ``Ping`` number ``seq``; ``ping_sent_ns`` echoes that ping's ``sent_ns``."""

    sent_ns: int
    seq: int
    ping_sent_ns: int
    min_delta_ns: int | None = None


# ---- actions and results -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadWeightsMsg:
    sent_ns: int
    action: LoadWeights


@dataclass(frozen=True, slots=True)
class InferMsg:
    """An ``Infer`` with one ``InferInputs`` per request id, or no inputs at all (``()``)."""

    sent_ns: int
    action: Infer
    inputs: tuple[InferInputs, ...] = ()

    def input_arrays(self) -> list[dict[str, npt.NDArray[np.generic]]]:
        """The inputs as arrays; those sent as shared segments are mapped (each segment once)."""
        segments: dict[str, memoryview] = {}
        return [i.to_arrays(segments) for i in self.inputs]

    @property
    def shares_memory(self) -> bool:
        """Whether an input came as a shared segment rather than as bytes."""
        return any(t.shared is not None for i in self.inputs for t in i.tensors.values())


@dataclass(frozen=True, slots=True)
class EvictWeightsMsg:
    sent_ns: int
    action: EvictWeights


@dataclass(frozen=True, slots=True)
class ActionResultMsg:
    """A worker's result; ``outputs`` (one per request) only for a successful ``Infer``."""

    sent_ns: int
    result: ActionResult
    outputs: tuple[InferOutputs, ...] = ()

    def output_arrays(self) -> list[dict[str, npt.NDArray[np.generic]]]:
        return [o.to_arrays() for o in self.outputs]


ActionMsg = LoadWeightsMsg | InferMsg | EvictWeightsMsg

Message = (
    Hello
    | GetWorkerState
    | WorkerState
    | RescanRepository
    | Ping
    | Pong
    | LoadWeightsMsg
    | InferMsg
    | EvictWeightsMsg
    | ActionResultMsg
)


def action_message(
    action: Action, inputs: tuple[InferInputs, ...] = (), sent_ns: int = 0
) -> ActionMsg:
    """The message that carries ``action`` (``inputs`` only for an ``Infer``)."""
    if isinstance(action, Infer):
        return InferMsg(sent_ns, action, inputs)
    if inputs:
        raise ValueError(f"{type(action).__name__} takes no inputs")
    if isinstance(action, LoadWeights):
        return LoadWeightsMsg(sent_ns, action)
    return EvictWeightsMsg(sent_ns, action)
