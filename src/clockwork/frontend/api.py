"""The front door's protocol-independent interface: what HTTP and gRPC both call.

The HTTP server (``http_server``) and the gRPC server (``grpc_server``) decode a client's request
into these values, call one ``ModelServer`` method, and encode what it returns (or the
``FrontendError`` it raises) in their protocol. Nothing here knows HTTP or gRPC; the one
implementation over the controller is ``clockwork.frontend.server.ControllerModelServer``, and
tests may use any other object that satisfies the protocol.

Tensors travel as numpy arrays whose shape is the request's full shape (with the batch dimension
for models with ``max_batch_size >= 1``, as in Triton). ``BYTES`` tensors are numpy ``object``
arrays of ``bytes``; ``BF16`` has no numpy dtype and is refused where it would be decoded.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from clockwork.core.signature import TensorSignature

#: the Triton protocol extensions this server implements (``GET /v2`` lists them)
EXTENSIONS = (
    "classification",
    "model_repository",
    "model_configuration",
    "schedule_policy",
    "statistics",
    "binary_tensor_data",
)

Parameter = bool | int | float | str


#: the gRPC trailing metadata key that carries a refusal's ``reason`` (HTTP: the body's)
REASON_METADATA_KEY = "clockwork-reason"


class ErrorKind(enum.Enum):
    """Why a call failed, with its HTTP status and gRPC status code name."""

    INVALID_ARGUMENT = (400, "INVALID_ARGUMENT")  # the client's request is wrong
    NOT_FOUND = (404, "NOT_FOUND")  # unknown model, version or route
    PAYLOAD_TOO_LARGE = (413, "RESOURCE_EXHAUSTED")  # body or tensor over the configured bound
    DEADLINE_INFEASIBLE = (429, "RESOURCE_EXHAUSTED")  # refused at once: the timeout cannot hold
    OVERLOADED = (503, "UNAVAILABLE")  # accepted, then refused: no device could fit it in time
    UNAVAILABLE = (503, "UNAVAILABLE")  # not ready, model not loaded, worker lost
    INTERNAL = (500, "INTERNAL")  # the server's own failure (never for a client's mistake)

    @property
    def http_status(self) -> int:
        return self.value[0]

    @property
    def grpc_code(self) -> str:
        """A ``grpc.StatusCode`` member name."""
        return self.value[1]


class FrontendError(Exception):
    """A call the server refuses. ``reason`` is a stable machine-readable word (a
    ``ResponseStatus`` name for scheduler refusals, else e.g. ``BAD_TENSOR``)."""

    def __init__(self, kind: ErrorKind, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.reason = reason or kind.name

    def __reduce__(self) -> tuple[type[FrontendError], tuple[ErrorKind, str, str]]:
        # raised in a decode process and re-raised here: pickled with all three fields
        return (type(self), (self.kind, self.message, self.reason))


@dataclass(frozen=True, slots=True)
class Tensor:
    """A named tensor of a request or response. ``parameters`` are the tensor's own (e.g.
    ``binary_data_size`` is a transport detail and never appears here)."""

    name: str
    datatype: str
    data: npt.NDArray[np.generic]
    parameters: Mapping[str, Parameter] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.data.shape)


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """An output the client asked for; ``parameters`` may hold ``binary_data`` (HTTP) or
    ``classification`` (top-k), which the protocol layers interpret."""

    name: str
    parameters: Mapping[str, Parameter] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InferenceCall:
    """One inference request as the client sent it (decoded, not yet validated against the
    model). ``timeout_us`` and ``priority`` are Triton's schedule-policy parameters; ``outputs``
    empty means all of the model's outputs."""

    model: str
    inputs: tuple[Tensor, ...]
    version: str = ""
    id: str = ""
    outputs: tuple[RequestedOutput, ...] = ()
    timeout_us: int | None = None
    priority: int = 0
    parameters: Mapping[str, Parameter] = field(default_factory=dict)
    # how much of the timeout the protocol layer spends on this call outside the controller:
    # reading and decoding it so far, and (expected) encoding its answer (reply_cost.py)
    overhead_ns: int = 0


@dataclass(frozen=True, slots=True)
class InferenceResult:
    """A successful inference. ``parameters`` carries what the server adds (``late`` when the
    result came after the deadline, ``batch_size``, ``cold_start``)."""

    model: str
    version: str
    id: str
    outputs: tuple[Tensor, ...]
    parameters: Mapping[str, Parameter] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSignature, ...]
    outputs: tuple[TensorSignature, ...]
    max_batch_size: int


class ModelState(enum.Enum):
    """A model's state in the repository index (Triton's words)."""

    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"  # known to a worker, not loaded (unloaded by a client)
    LOADING = "LOADING"
    UNLOADING = "UNLOADING"


@dataclass(frozen=True, slots=True)
class RepositoryEntry:
    name: str
    version: str
    state: ModelState
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DurationStat:
    """Triton's ``StatisticDuration``: a count and the total nanoseconds."""

    count: int = 0
    ns: int = 0


@dataclass(frozen=True, slots=True)
class ModelStatistics:
    """Triton's per-model statistics. ``last_inference_ms`` is wall-clock milliseconds since the
    epoch of the last answered request (0 if none)."""

    name: str
    version: str
    last_inference_ms: int
    inference_count: int
    execution_count: int
    success: DurationStat
    fail: DurationStat
    queue: DurationStat
    compute_input: DurationStat
    compute_infer: DurationStat
    compute_output: DurationStat
    batch_stats: Mapping[int, DurationStat] = field(default_factory=dict)


class ModelServer(Protocol):
    """What the protocol layers call. Every method raises ``FrontendError`` for a call it
    refuses and nothing else for anything a client did."""

    name: str
    version: str

    def live(self) -> bool: ...

    def ready(self) -> bool:
        """Ready to serve: at least one worker joined."""
        ...

    def model_metadata(self, model: str, version: str = "") -> ModelMetadata: ...

    def model_ready(self, model: str, version: str = "") -> bool:
        """False for a known model that cannot be served now; ``NOT_FOUND`` if unknown."""
        ...

    def model_config(self, model: str, version: str = "") -> Mapping[str, object]:
        """Triton's model configuration as JSON (``/v2/models/{m}/config``): ``name``,
        ``platform``, ``backend``, ``max_batch_size``, ``input``/``output`` with ``data_type``
        (``TYPE_FP32``...) and ``dims``, ``version_policy``, ``dynamic_batching``..."""
        ...

    async def infer(self, call: InferenceCall) -> InferenceResult: ...

    def refuse_early(
        self, model: str, version: str, timeout_us: int, spent_ns: int, samples: int = 1
    ) -> None:
        """Raise the refusal an inference call of ``model`` with ``timeout_us`` (0: none of its
        own) and ``samples`` samples would get now, where that is known before its inputs are
        decoded; return if it may be taken (or only ``infer`` can tell). ``spent_ns``: as
        ``InferenceCall.overhead_ns``."""
        ...

    def repository_index(self, ready_only: bool = False) -> Sequence[RepositoryEntry]: ...

    async def load_model(self, model: str) -> None:
        """Make a model the workers know servable again (Triton's repository load)."""
        ...

    async def unload_model(self, model: str) -> None:
        """Stop serving a model: waiting requests get ``MODEL_REMOVED``, its weights are
        evicted; it stays in the index as ``UNAVAILABLE``."""
        ...

    def statistics(self, model: str = "", version: str = "") -> Sequence[ModelStatistics]:
        """Every model's statistics, or one model's (``NOT_FOUND`` if unknown)."""
        ...

    def metrics_text(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        ...
