"""The worker-side rules of one device, sans-IO: window checks, executors, pages, versions.

Both the simulated worker and the real worker runtime drive this object, so that they cannot
drift apart. It decides *whether and when* an action runs; the driver decides *how long* it takes
(a profile in the simulator, a real backend in the worker) and reports back with ``finish``.

Per device there are two executors, each strictly one action at a time: ``INFER`` and ``LOAD``
(a load copies weights while an inference runs, as a PCIe copy does). Each takes its actions in
order of ``earliest``; before ``earliest`` it waits, after ``latest`` it refuses (``TOO_LATE``)
without running. ``EvictWeights`` runs at once on receipt. Only eviction frees pages. Every load
and eviction bumps the model's weights version, so an inference that raced one fails with
``WEIGHTS_CHANGED_DURING_EXEC`` instead of reading freed memory.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from clockwork.core.actions import (
    Action,
    ActionResult,
    ActionStatus,
    EvictWeights,
    Infer,
    LoadWeights,
)
from clockwork.core.ids import DeviceId

# Final aliases: a compiled-build accommodation (core/requests.py says why)
_heappush: Final = heapq.heappush
_heappop: Final = heapq.heappop


class Executor(enum.Enum):
    INFER = "infer"
    LOAD = "load"


@dataclass(frozen=True, slots=True)
class WorkerModel:
    """What a worker must know of a registered model to check actions against it."""

    name: str
    pages: int
    batch_sizes: tuple[int, ...]


# per-request value: Final fields and a written-out __init__, not frozen=True: a
# compiled-build accommodation (core/requests.py says why)
@dataclass(slots=True, init=False, unsafe_hash=True)
class Started:
    """The executor begins ``action`` at ``began_ns``; call ``finish`` when it is done."""

    action: Final[LoadWeights | Infer]
    began_ns: Final[int]

    def __init__(self, action: LoadWeights | Infer, began_ns: int) -> None:
        self.action = action
        self.began_ns = began_ns


@dataclass(slots=True, init=False, unsafe_hash=True)
class Refused:
    """The executor dequeued an action and refused it without running it."""

    result: Final[ActionResult]

    def __init__(self, result: ActionResult) -> None:
        self.result = result


@dataclass(slots=True, init=False, unsafe_hash=True)
class Wait:
    """Nothing may start before ``until_ns``."""

    until_ns: Final[int]

    def __init__(self, until_ns: int) -> None:
        self.until_ns = until_ns


Decision = Started | Refused | Wait | None


class _Weights:
    __slots__ = ("pages", "ready", "version")

    def __init__(self, pages: int, version: int) -> None:
        self.pages = pages
        self.ready = False
        self.version = version


class _Queue:
    __slots__ = ("busy", "busy_received_ns", "busy_version", "heap", "seq")

    def __init__(self) -> None:
        # (earliest, seq, received_ns, action)
        self.heap: list[tuple[int, int, int, LoadWeights | Infer]] = []
        self.seq = 0
        self.busy: LoadWeights | Infer | None = None
        self.busy_received_ns = 0
        self.busy_version = 0


class DeviceState:
    """The rules of one worker device. See the module docstring."""

    def __init__(
        self, device: DeviceId, total_pages: int, models: Mapping[str, WorkerModel] | None = None
    ) -> None:
        if total_pages <= 0:
            raise ValueError(f"device {device}: total_pages must be > 0, got {total_pages}")
        self.device = device
        self.total_pages = total_pages
        self.free_pages = total_pages
        self.models: dict[str, WorkerModel] = dict(models or {})
        self.weights: dict[str, _Weights] = {}
        # versions survive eviction so a reload never reuses an old number
        self._versions: dict[str, int] = {}
        # two attributes, not a dict keyed by Executor: hashing an enum member runs Python code
        self._infer = _Queue()
        self._load = _Queue()

    # ----------------------------------------------------------------- state

    def register_model(self, model: WorkerModel) -> None:
        self.models[model.name] = model

    def resident_models(self) -> tuple[str, ...]:
        return tuple(name for name, w in self.weights.items() if w.ready)

    def used_pages(self) -> int:
        return sum(w.pages for w in self.weights.values())

    def _queue(self, executor: Executor) -> _Queue:
        return self._infer if executor is Executor.INFER else self._load

    def busy(self, executor: Executor) -> LoadWeights | Infer | None:
        return self._queue(executor).busy

    def queued(self, executor: Executor) -> int:
        return len(self._queue(executor).heap)

    # ----------------------------------------------------------------- actions in

    def receive(self, action: Action, now_ns: int) -> ActionResult | None:
        """Take an action. Returns a result at once for evictions and for actions that are
        invalid on arrival; otherwise queues it and returns None."""
        if action.device != self.device:
            return self._result(
                action,
                ActionStatus.UNKNOWN_DEVICE,
                now_ns,
                now_ns,
                f"this is device {self.device}, not {action.device}",
            )
        model = self.models.get(action.model)
        if model is None:
            return self._result(
                action,
                ActionStatus.UNKNOWN_MODEL,
                now_ns,
                now_ns,
                f"model {action.model!r} is not registered on this worker",
            )
        if type(action) is EvictWeights:
            return self._evict(action, now_ns)
        assert isinstance(action, LoadWeights | Infer)
        if action.latest_ns < action.earliest_ns:
            return self._result(
                action,
                ActionStatus.INVALID_WINDOW,
                now_ns,
                now_ns,
                f"window [{action.earliest_ns}, {action.latest_ns}] is empty",
            )
        if type(action) is Infer:
            if action.batch_size not in model.batch_sizes:
                return self._result(
                    action,
                    ActionStatus.UNSUPPORTED_BATCH_SIZE,
                    now_ns,
                    now_ns,
                    f"batch size {action.batch_size} is not one of {model.batch_sizes}",
                )
            if len(action.request_ids) > action.batch_size:
                return self._result(
                    action,
                    ActionStatus.INVALID_INPUT,
                    now_ns,
                    now_ns,
                    f"{len(action.request_ids)} requests exceed batch size {action.batch_size}",
                )
            q = self._infer
        else:
            q = self._load
        q.seq += 1
        _heappush(q.heap, (action.earliest_ns, q.seq, now_ns, action))
        return None

    def _evict(self, action: EvictWeights, now_ns: int) -> ActionResult:
        w = self.weights.pop(action.model, None)
        if w is None:
            return self._result(
                action,
                ActionStatus.WEIGHTS_NOT_PRESENT,
                now_ns,
                now_ns,
                f"model {action.model!r} holds no pages here",
            )
        self.free_pages += w.pages
        self._versions[action.model] = self._versions.get(action.model, 0) + 1
        return self._result(action, ActionStatus.SUCCESS, now_ns, now_ns)

    # ----------------------------------------------------------------- executors

    def next(self, executor: Executor, now_ns: int) -> Decision:
        """What ``executor`` does now: start an action, refuse one, wait, or nothing (idle or
        busy). Call again after a refusal: more may be queued."""
        q = self._queue(executor)
        if q.busy is not None or not q.heap:
            return None
        earliest, _, received_ns, action = q.heap[0]
        if now_ns < earliest:
            return Wait(earliest)
        _heappop(q.heap)
        if now_ns > action.latest_ns:
            return Refused(
                self._result(
                    action,
                    ActionStatus.TOO_LATE,
                    received_ns,
                    now_ns,
                    f"dequeued {now_ns - action.latest_ns} ns after latest",
                )
            )
        name = action.model
        if type(action) is LoadWeights:
            if name in self.weights:
                return Refused(
                    self._result(action, ActionStatus.WEIGHTS_ALREADY_PRESENT, received_ns, now_ns)
                )
            pages = self.models[name].pages
            if pages > self.free_pages:
                return Refused(
                    self._result(
                        action,
                        ActionStatus.INSUFFICIENT_PAGES,
                        received_ns,
                        now_ns,
                        f"needs {pages} pages, {self.free_pages} free",
                    )
                )
            self.free_pages -= pages
            version = self._versions.get(name, 0) + 1
            self._versions[name] = version
            self.weights[name] = _Weights(pages, version)
        else:
            w = self.weights.get(name)
            if w is None or not w.ready:
                return Refused(
                    self._result(action, ActionStatus.WEIGHTS_NOT_PRESENT, received_ns, now_ns)
                )
            version = w.version
        q.busy = action
        q.busy_received_ns = received_ns
        q.busy_version = version
        return Started(action, now_ns)

    def finish(
        self,
        executor: Executor,
        began_ns: int,
        now_ns: int,
        exec_ns: int | None = None,
        input_copy_ns: int = 0,
        output_copy_ns: int = 0,
        error: str | None = None,
    ) -> ActionResult:
        """The running action of ``executor`` ended at ``now_ns`` (``error``: backend failed)."""
        q = self._queue(executor)
        action = q.busy
        if action is None:
            raise RuntimeError(f"device {self.device}: {executor.value} executor is idle")
        q.busy = None
        name = action.model
        w = self.weights.get(name)
        intact = w is not None and w.version == q.busy_version
        if exec_ns is None:
            exec_ns = now_ns - began_ns
        if error is not None:
            status = ActionStatus.EXECUTION_ERROR
            if type(action) is LoadWeights and intact and w is not None:
                # a failed load leaves no weights behind
                del self.weights[name]
                self.free_pages += w.pages
        elif not intact:
            status = ActionStatus.WEIGHTS_CHANGED_DURING_EXEC
        else:
            status = ActionStatus.SUCCESS
            if type(action) is LoadWeights and w is not None:
                w.ready = True
        return ActionResult(
            action.action_id,
            self.device,
            name,
            status,
            q.busy_received_ns,
            began_ns,
            now_ns,
            exec_ns,
            input_copy_ns,
            output_copy_ns,
            error or "",
        )

    def _result(
        self, action: Action, status: ActionStatus, received_ns: int, now_ns: int, detail: str = ""
    ) -> ActionResult:
        return ActionResult(
            action.action_id,
            action.device,
            action.model,
            status,
            received_ns,
            now_ns,
            now_ns,
            0,
            0,
            0,
            detail,
        )
