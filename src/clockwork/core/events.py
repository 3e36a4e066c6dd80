"""Events fed to a scheduler. Each is a plain value; time travels beside it as ``now_ns``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from clockwork.core.actions import ActionResult
from clockwork.core.ids import DeviceId
from clockwork.core.profile import DeviceKind, ModelProfile
from clockwork.core.requests import InferRequest
from clockwork.core.signature import ModelSignature


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A servable model: its name, its profile per device kind, its default SLO, and what it
    takes and returns (None where the worker does not say, as in bare simulations)."""

    name: str
    profiles: tuple[ModelProfile, ...]
    default_slo_ns: int | None = None
    signature: ModelSignature | None = None

    def profile_for(self, kind: str) -> ModelProfile | None:
        for p in self.profiles:
            if p.device_kind == kind:
                return p
        return None


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A device as a worker reports it, with the models already resident in its cache."""

    device: DeviceId
    kind: DeviceKind
    resident_models: tuple[str, ...] = ()


# per-request value: Final fields and a written-out __init__, not frozen=True: a
# compiled-build accommodation (core/requests.py says why)
@dataclass(slots=True, init=False, unsafe_hash=True)
class RequestArrived:
    request: Final[InferRequest]

    def __init__(self, request: InferRequest) -> None:
        self.request = request


@dataclass(slots=True, init=False, unsafe_hash=True)
class ActionFinished:
    result: Final[ActionResult]

    def __init__(self, result: ActionResult) -> None:
        self.result = result


@dataclass(frozen=True, slots=True)
class WorkerJoined:
    """A worker and its devices. ``models``: the names of the models it can serve (load from its
    host memory); None means every registered model (simulated workers serve them all). A model
    it does not list is never loaded there, and weights of one reported resident are evicted."""

    worker: str
    devices: tuple[DeviceInfo, ...]
    models: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class WorkerModelsChanged:
    """A joined worker now serves exactly ``models`` (after a repository rescan). Models it no
    longer lists are evicted from its devices; new ones may be loaded there from now on."""

    worker: str
    models: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WorkerLost:
    worker: str


@dataclass(frozen=True, slots=True)
class ModelRegistered:
    model: ModelInfo


@dataclass(frozen=True, slots=True)
class ModelRemoved:
    name: str


@dataclass(frozen=True, slots=True)
class RequestsWithdrawn:
    """Nobody waits for these requests any more: another sample of their call was refused, or
    the caller went away. Those still queued are answered ``WITHDRAWN`` at once, so that no
    device time goes to them; those sent already run and are answered as usual; ids already
    answered are passed over (the answer and the withdrawal may cross)."""

    request_ids: tuple[int, ...]
    why: str


@dataclass(frozen=True, slots=True)
class CallArrived:
    """The samples of one client call, one request each, served or refused together: once one
    is answered without a result, those of the others still queued are answered ``WITHDRAWN``
    before anything more is planned, so that no device runs part of a call that has failed
    (those sent already run and are answered as usual)."""

    requests: tuple[InferRequest, ...]


Event = (
    RequestArrived
    | CallArrived
    | ActionFinished
    | WorkerJoined
    | WorkerModelsChanged
    | WorkerLost
    | ModelRegistered
    | ModelRemoved
    | RequestsWithdrawn
)
