"""The ``ModelServer`` over a running controller: the front door's one real implementation.

A request is checked against the model's signature (learned from the worker that registered it)
before the scheduler sees it, so a bad tensor is refused with a message naming it and nothing else
changes. A request carrying a batch of ``n`` samples (leading dimension, up to the model's
``max_batch_size``) becomes ``n`` scheduler requests with the same deadline and priority: the
scheduler batches samples across clients itself, which is the point of a central planner. The
call succeeds when all of them do; otherwise it fails with the first refusal's reason.

Deadlines follow Triton's schedule-policy convention: ``timeout`` in microseconds from arrival;
absent or 0 means the model's default SLO, else the server's. Priorities too: 1 is the highest,
larger numbers are lower, 0 means the default level (``DEFAULT_PRIORITY_LEVEL``); the scheduler
prefers larger numbers, so the level is negated on the way in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from clockwork import __version__
from clockwork.core.events import ModelInfo
from clockwork.core.requests import Response, ResponseStatus
from clockwork.core.signature import ModelSignature, TensorSignature
from clockwork.core.units import NS_PER_US
from clockwork.frontend.api import (
    ErrorKind,
    FrontendError,
    InferenceCall,
    InferenceResult,
    ModelMetadata,
    ModelState,
    ModelStatistics,
    RepositoryEntry,
    Tensor,
)
from clockwork.frontend.availability import Availability
from clockwork.frontend.door_ticket import TICKET, DoorTicket
from clockwork.frontend.metrics import ServingMetrics
from clockwork.frontend.parameters import timeout_param
from clockwork.frontend.single_flight import SingleFlight
from clockwork.service.controller_service import ControllerClosedError, ControllerService

log = logging.getLogger("clockwork.frontend.server")

DEFAULT_PRIORITY_LEVEL = 10

_REFUSALS: dict[ResponseStatus, ErrorKind] = {
    ResponseStatus.DEADLINE_INFEASIBLE: ErrorKind.DEADLINE_INFEASIBLE,
    ResponseStatus.OVERLOADED: ErrorKind.OVERLOADED,
    ResponseStatus.MODEL_NOT_FOUND: ErrorKind.NOT_FOUND,
    ResponseStatus.MODEL_REMOVED: ErrorKind.UNAVAILABLE,
    ResponseStatus.INVALID_INPUT: ErrorKind.INVALID_ARGUMENT,
    ResponseStatus.WORKER_LOST: ErrorKind.UNAVAILABLE,
    ResponseStatus.EXECUTION_FAILED: ErrorKind.INTERNAL,
    # (never a call's own answer: the call was answered when its samples were withdrawn)
    ResponseStatus.WITHDRAWN: ErrorKind.UNAVAILABLE,
}

# what tells the door's limit that the server had no room for a request it admitted
_LOAD_FAILURES = frozenset({ResponseStatus.OVERLOADED, ResponseStatus.LATE})

_EMPTY_SIGNATURE_NOTE = "the worker did not describe this model's tensors"


def scheduler_priority(priority: int) -> int:
    """Triton's priority (1 highest, 0 default) as the scheduler's (larger first)."""
    return -(priority if priority > 0 else DEFAULT_PRIORITY_LEVEL)


class ControllerModelServer:
    """Serve the models of ``controller``. ``metrics`` (attached to the controller's hooks by
    the caller) answers ``statistics`` and ``metrics_text``. ``expected_models``: the models
    the deployment names before its workers join (see ``availability``)."""

    name = "clockwork"
    version = __version__

    def __init__(
        self,
        controller: ControllerService,
        metrics: ServingMetrics,
        expected_models: Iterable[str] = (),
    ) -> None:
        self.controller = controller
        self.metrics = metrics
        self.availability = Availability(controller, expected_models)
        # concurrent loads of unknown names share one rescan
        self._rescan = SingleFlight(self._rescan_models)
        # set by ``clockwork serve`` while its warm start loads the models: the server is not
        # ready then, so that a client that waits for readiness finds its first model loaded
        # (during the warm start a request to a model still queued for loading can be refused)
        self.starting = False

    # ----------------------------------------------------------------- health and metadata

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return bool(self.controller.workers) and not self.starting

    def _info(self, model: str, version: str) -> tuple[ModelInfo, bool]:
        """The model and whether it is registered (False: unloaded by a client)."""
        info = self.controller.models.get(model)
        registered = info is not None
        if info is None:
            info = self.controller.removed_models.get(model)
        if info is None:
            raise self.availability.unknown(model)
        if version:
            versions = _versions(info.signature)
            if version not in versions:
                raise FrontendError(
                    ErrorKind.NOT_FOUND,
                    f"model {model!r} has no version {version!r} (it has {', '.join(versions)})",
                    ResponseStatus.MODEL_NOT_FOUND.value,
                )
        return info, registered

    def model_metadata(self, model: str, version: str = "") -> ModelMetadata:
        """The model's signature, while it can be served: a model on no live worker (or
        unloaded) answers not ready, as Triton does, so a client never builds requests for a
        model that would refuse them. Its configuration stays readable (``model_config``)."""
        info, registered = self._info(model, version)
        if not registered:
            raise self.availability.not_ready(model, "it is unloaded")
        why = self.availability.why_unavailable(model)
        if why:
            raise self.availability.not_ready(model, why)
        sig = info.signature
        if sig is None:
            return ModelMetadata(model, ("1",), "unknown", (), (), 1)
        return ModelMetadata(
            model, _versions(sig), sig.platform, sig.inputs, sig.outputs, sig.max_batch_size
        )

    def model_ready(self, model: str, version: str = "") -> bool:
        try:
            _, registered = self._info(model, version)
        except FrontendError as e:
            if e.kind is ErrorKind.UNAVAILABLE:  # workers still joining: not ready (yet)
                return False
            raise
        return registered and not self.availability.why_unavailable(model)

    def model_config(self, model: str, version: str = "") -> Mapping[str, object]:
        info, _ = self._info(model, version)
        sig = info.signature
        config: dict[str, Any] = {
            "name": model,
            "platform": "unknown",
            "backend": "clockwork",
            "max_batch_size": 1,
            "input": [],
            "output": [],
        }
        if sig is not None:
            config.update(
                platform=sig.platform,
                max_batch_size=sig.max_batch_size,
                version_policy={"specific": {"versions": list(sig.versions)}},
                input=[_config_tensor(t) for t in sig.inputs],
                output=[_config_tensor(t) for t in sig.outputs],
            )
        batch_sizes = sorted({b for p in info.profiles for b in p.exec_ns})
        # the scheduler batches across requests, as Triton's dynamic batcher does
        config["dynamic_batching"] = {"preferred_batch_size": batch_sizes}
        slo_ns = self.controller.timeout_ns_of(info)
        config["parameters"] = {"default_timeout_us": {"string_value": str(slo_ns // NS_PER_US)}}
        return config

    # ----------------------------------------------------------------- inference

    async def infer(self, call: InferenceCall) -> InferenceResult:
        info, registered = self._info(call.model, call.version)
        if not registered:
            raise FrontendError(
                ErrorKind.UNAVAILABLE,
                f"model {call.model!r} is unloaded; load it through the repository API first",
                "MODEL_NOT_READY",
            )
        sig = info.signature
        if sig is None:
            raise FrontendError(
                ErrorKind.UNAVAILABLE,
                f"model {call.model!r}: {_EMPTY_SIGNATURE_NOTE}",
                "MODEL_NOT_READY",
            )
        why = self.availability.why_unavailable(call.model)
        if why:
            raise self.availability.not_ready(call.model, why)
        samples = _check_inputs(call, sig)
        wanted = _check_outputs(call, sig)
        timeout_ns = _timeout_ns(call.timeout_us)
        if call.priority < 0:
            raise FrontendError(
                ErrorKind.INVALID_ARGUMENT,
                f"priority must be >= 0, got {call.priority}",
                "BAD_PARAMETER",
            )
        priority = scheduler_priority(call.priority)
        ticket = self._ticket(info, timeout_ns)
        try:
            # a refused sample ends the call at once (its other samples are withdrawn)
            answers = await self.controller.submit_call(
                call.model,
                samples,
                timeout_ns=timeout_ns,
                priority=priority,
                spent_ns=call.overhead_ns,
            )
        except ControllerClosedError as e:
            raise FrontendError(
                ErrorKind.UNAVAILABLE, f"server is shutting down: {e}", "SHUTTING_DOWN"
            ) from e
        if ticket is not None:
            ticket.failed = any(r.status in _LOAD_FAILURES for r, _ in answers)
        for response, _ in answers:
            if not response.status.delivered_result:
                raise _refusal(response)
        return _result(call, sig, wanted, answers)

    def refuse_early(
        self, model: str, version: str, timeout_us: int, spent_ns: int, samples: int = 1
    ) -> None:
        try:
            info, registered = self._info(model, version)
        except FrontendError:
            return  # ``infer`` says what is wrong with the call
        sig = info.signature
        if not registered or sig is None or self.availability.why_unavailable(model):
            return
        timeout_ns = _timeout_ns(timeout_us)
        # (a count the model cannot take is the decoder's to refuse, as a bad request)
        count = samples if 1 <= samples <= sig.max_batch_size else 1
        response = self.controller.refuse_early(
            model, timeout_ns=timeout_ns, spent_ns=spent_ns, count=count
        )
        if response is None:
            return
        ticket = self._ticket(info, timeout_ns)
        if ticket is not None:
            ticket.failed = response.status in _LOAD_FAILURES
        raise _refusal(response)

    def _ticket(self, info: ModelInfo, timeout_ns: int | None) -> DoorTicket | None:
        """The door's ticket for this call (if any), told the call's timeout."""
        ticket = TICKET.get()
        if ticket is not None:
            ticket.timeout_ns = (
                timeout_ns if timeout_ns is not None else self.controller.timeout_ns_of(info)
            )
        return ticket

    # ----------------------------------------------------------------- repository

    def repository_index(self, ready_only: bool = False) -> Sequence[RepositoryEntry]:
        availability = self.availability
        entries = []
        for n, i in self.controller.models.items():
            why = availability.why_unavailable(n)
            if not why:
                entries.append(RepositoryEntry(n, _latest(i), ModelState.READY))
            elif not ready_only:
                entries.append(RepositoryEntry(n, _latest(i), ModelState.UNAVAILABLE, why))
        if not ready_only:
            removed = self.controller.removed_models
            entries += [
                RepositoryEntry(n, _latest(i), ModelState.UNAVAILABLE, "unloaded")
                for n, i in removed.items()
            ]
            entries += [
                RepositoryEntry(n, "", ModelState.UNAVAILABLE, availability.why_unregistered(n))
                for n in availability.expected_models
                if n not in self.controller.models and n not in removed
            ]
        return sorted(entries, key=lambda e: e.name)

    async def load_model(self, model: str) -> None:
        """A model unloaded earlier is registered again; a name no worker serves yet makes the
        workers rescan their repositories (a model directory copied in while serving)."""
        known = model in self.controller.models or model in self.controller.removed_models
        if not known:
            await self._rescan()
            if model not in self.controller.models:  # a broken model: 400 with the reason
                broken = await asyncio.to_thread(self.availability.broken_error, model)
                if broken is not None:
                    raise broken
        _, registered = self._info(model, "")
        if not registered:
            self.controller.restore_model(model)
            log.info("model %s loaded (registered again)", model)

    async def _rescan_models(self) -> list[str]:
        added = await self.controller.rescan_models()
        if added:
            log.info("repository rescan added %s", ", ".join(added))
        return added

    async def unload_model(self, model: str) -> None:
        _, registered = self._info(model, "")
        if registered:
            self.controller.remove_model(model)
            log.info("model %s unloaded", model)

    # ----------------------------------------------------------------- observability

    def statistics(self, model: str = "", version: str = "") -> Sequence[ModelStatistics]:
        if model:
            info, _ = self._info(model, version)
            return [self.metrics.statistics(model, _latest(info))]
        known = {**self.controller.removed_models, **self.controller.models}
        return [self.metrics.statistics(n, _latest(i)) for n, i in sorted(known.items())]

    def metrics_text(self) -> bytes:
        return self.metrics.metrics_text()


# --------------------------------------------------------------------------- helpers


def _versions(sig: ModelSignature | None) -> tuple[str, ...]:
    """A model's versions as the protocol names them (a model without a signature has one)."""
    return tuple(str(v) for v in (sig.versions if sig is not None else (1,)))


def _latest(info: ModelInfo) -> str:
    return _versions(info.signature)[-1]


def _config_tensor(t: TensorSignature) -> dict[str, object]:
    return {"name": t.name, "data_type": f"TYPE_{t.datatype}", "dims": list(t.shape)}


def _bad(message: str) -> FrontendError:
    return FrontendError(ErrorKind.INVALID_ARGUMENT, message, "BAD_TENSOR")


def _check_inputs(
    call: InferenceCall, sig: ModelSignature
) -> list[dict[str, npt.NDArray[np.generic]]]:
    """The per-sample inputs of ``call``, after checking names, datatypes and shapes."""
    given: dict[str, Tensor] = {}
    for tensor in call.inputs:
        if tensor.name in given:
            raise _bad(f"input {tensor.name!r} is given twice")
        if sig.input(tensor.name) is None:
            raise _bad(
                f"model {call.model!r} has no input {tensor.name!r} (its inputs: "
                f"{', '.join(s.name for s in sig.inputs)})"
            )
        given[tensor.name] = tensor
    batch: int | None = None
    for spec in sig.inputs:
        t = given.get(spec.name)
        if t is None:
            raise _bad(
                f"input {spec.name!r} is missing (model {call.model!r} takes "
                f"{', '.join(s.name for s in sig.inputs)})"
            )
        if t.datatype != spec.datatype:
            raise _bad(
                f"input {spec.name!r}: datatype {t.datatype}, but the model takes {spec.datatype}"
            )
        shape = t.shape
        expected = [-1, *spec.shape]
        if len(shape) != len(expected) or any(
            e not in (-1, d) for d, e in zip(shape[1:], spec.shape, strict=True)
        ):
            raise _bad(
                f"input {spec.name!r}: shape {list(shape)}, but the model takes "
                f"{expected} (batch first)"
            )
        n = shape[0]
        if not 1 <= n <= sig.max_batch_size:
            raise _bad(
                f"input {spec.name!r}: batch dimension {n} is outside 1.."
                f"{sig.max_batch_size} (the model's max_batch_size)"
            )
        if batch is not None and n != batch:
            raise _bad(
                f"input {spec.name!r}: batch dimension {n} differs from the other inputs' {batch}"
            )
        batch = n
        _check_range(spec, t.data)
    assert batch is not None
    return [{name: t.data[i] for name, t in given.items()} for i in range(batch)]


def _check_range(spec: TensorSignature, data: npt.NDArray[np.generic]) -> None:
    """Refuse integer values the model cannot take (an index past its embedding table would
    fail the whole batch on the worker, or read past it)."""
    if spec.value_range is None or not data.size:
        return
    low, high = spec.value_range
    least, greatest = data.min(), data.max()
    if least < low or greatest > high:
        raise _bad(
            f"input {spec.name!r}: values must lie in [{low}, {high}] (the values the model "
            f"takes); got min {least}, max {greatest}"
        )


def _check_outputs(call: InferenceCall, sig: ModelSignature) -> list[str]:
    names = [t.name for t in sig.outputs]
    wanted = [o.name for o in call.outputs] or names
    for name in wanted:
        if name not in names:
            raise _bad(
                f"model {call.model!r} has no output {name!r} (its outputs: {', '.join(names)})"
            )
    if len(set(wanted)) != len(wanted):
        raise _bad(f"an output is requested twice: {wanted}")
    return wanted


def _timeout_ns(timeout_us: int | None) -> int | None:
    if timeout_us is None or timeout_us == 0:
        return None
    # the doors check it first (``timeout_param``); this is the same check for other callers
    checked = timeout_param({"timeout": timeout_us}, "request")
    return None if checked is None else checked * NS_PER_US


def _refusal(response: Response) -> FrontendError:
    kind = _REFUSALS.get(response.status, ErrorKind.INTERNAL)
    detail = f": {response.detail}" if response.detail else ""
    return FrontendError(kind, f"{response.status.value}{detail}", response.status.value)


def _result(
    call: InferenceCall,
    sig: ModelSignature,
    wanted: list[str],
    answers: Sequence[tuple[Response, dict[str, npt.NDArray[np.generic]] | None]],
) -> InferenceResult:
    specs = {t.name: t for t in sig.outputs}
    outputs = []
    for name in wanted:
        rows = []
        for response, arrays in answers:
            array = arrays.get(name) if arrays is not None else None
            if array is None:
                raise FrontendError(
                    ErrorKind.INTERNAL,
                    f"the worker returned no output {name!r} for request {response.request_id}",
                    ResponseStatus.EXECUTION_FAILED.value,
                )
            rows.append(array)
        data = np.stack(rows)
        outputs.append(Tensor(name, specs[name].datatype, data))
    params: dict[str, bool | int | float | str] = {
        "batch_size": max(r.batch_size for r, _ in answers),
        "cold_start": any(r.cold_start for r, _ in answers),
    }
    if any(r.status is ResponseStatus.LATE for r, _ in answers):
        params["late"] = True
    return InferenceResult(
        call.model, call.version or _versions(sig)[-1], call.id, tuple(outputs), params
    )
