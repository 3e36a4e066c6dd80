"""The worker runtime: drives each device's ``DeviceState`` in real time with real threads.

The rules (windows, executors, pages, versions, statuses) live in ``DeviceState``, shared with the
simulator; this module only supplies time, threads and a backend. It never evicts, batches or
reorders on its own: it does what it is told, when it is told (DESIGN.md s.4).

Per device: one ``DeviceState`` (``backend.kind.cache_pages`` pages, ``backend.models()``, and
later the models ``refresh_models`` finds the backend has gained), one lock with a condition
variable, and two executor threads, ``INFER`` and ``LOAD``, each running strictly one action at a
time. An executor thread loops: under the lock it asks
``state.next(executor, clock_ns())``; a ``Refused`` is reported; a ``Wait`` parks it on the
condition variable until ``earliest`` (or until something is submitted, since a new action may have
an earlier ``earliest``); a ``Started`` runs the backend call *outside* the lock, then
``state.finish`` under it, then reports the result (with the outputs of a successful ``Infer``).
A backend that raises gives ``EXECUTION_ERROR`` with the exception's message; the executor keeps
serving.

Start precision. ``Condition.wait(timeout)`` wakes late: timer slack and scheduler latency add
roughly 50 us to a millisecond (more on a loaded machine). So an executor sleeps on the condition
only until ``spin_ns`` (200 us by default) before ``earliest``, then polls the clock, yielding the
GIL between polls (``time.sleep(0)``) so that the other executor and the submitting threads are
not starved; an action thus starts within a few microseconds of ``earliest`` at the cost of at most
``spin_ns`` of polling per action. It never starts before ``earliest``: ``DeviceState`` checks.

Evictions run at once, in the submitting thread, under the device lock (so no executor starts in
between): ``DeviceState`` decides and ``backend.evict`` is called when it says ``SUCCESS``. The
backend contract promises that ``evict`` is never called for a model whose action is running, so if
the model's ``LoadWeights`` or ``Infer`` is running, the backend call is deferred until that
backend call returns (the executor makes it before ``finish``); the state has already freed the
pages and bumped the version, so the running action ends ``WEIGHTS_CHANGED_DURING_EXEC`` and the
``EvictWeights`` result (``SUCCESS``) is reported at once. A load waits to begin its backend copy
until evictions deferred behind a running inference are done, so the backend never loads into
pages it has not yet freed. If ``backend.evict`` itself raises, the eviction is reported
``EXECUTION_ERROR`` (the state has still freed the pages: the controller's view wins).

Inputs. ``submit(infer, inputs)`` takes one mapping per request (``len(inputs) ==
len(infer.request_ids)``, else ``INVALID_INPUT`` at once); ``None`` means one empty mapping per
request (enough for the emulated backend). Inputs are kept by action id until the action starts or
is answered; an action id that is still unanswered on its device may not be reused
(``INVALID_INPUT``).

Every accepted action gets exactly one result: the runtime keeps each device's unanswered actions
and reports each once, whichever path answers it.

Shutdown rule (``close``): no action starts once ``close`` begins. Actions already running finish
and are reported as usual; ``close`` joins the threads, then answers every action still queued with
``EXECUTION_ERROR`` (detail ``"worker shutting down"``), ``began_ns == ended_ns ==`` the moment of
shutdown. Actions submitted after ``close`` began are answered the same way, at once. If a join
times out (a backend call that never returns), its action is answered the same way and the late
result, should it ever come, is dropped.

``on_result`` is called from the executor threads and from the threads that call ``submit`` and
``close``, never under a lock (it may call ``submit``); it must be thread-safe. An exception it
raises is logged and swallowed so that the executor keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import TracebackType

import numpy as np
import numpy.typing as npt

from clockwork.core.actions import (
    Action,
    ActionResult,
    ActionStatus,
    EvictWeights,
    Infer,
    LoadWeights,
)
from clockwork.core.ids import DeviceId
from clockwork.worker.backends.base import Backend, PhaseTimes
from clockwork.worker.device_state import DeviceState, Executor, Refused, Started, Wait

_log = logging.getLogger(__name__)

Outputs = list[dict[str, npt.NDArray[np.generic]]]
Inputs = Sequence[Mapping[str, npt.NDArray[np.generic]]]
OnResult = Callable[[ActionResult, Outputs | None], None]

#: how long before ``earliest`` an executor stops sleeping and polls the clock (see module doc)
SPIN_NS = 200_000
#: the longest an executor sleeps in one go (Condition.wait rejects timeouts over TIMEOUT_MAX)
MAX_SLEEP_S = 3600.0
#: detail of the results of actions answered by ``close``
SHUTDOWN_DETAIL = "worker shutting down"


@dataclass(frozen=True, slots=True)
class DeviceSnapshot:
    """One device's state at one moment (taken under its lock), for tests and status pages."""

    device: DeviceId
    total_pages: int
    free_pages: int
    resident_models: tuple[str, ...]
    queued_infer: int
    queued_load: int
    running_infer: int | None  # action id
    running_load: int | None  # action id
    unanswered: int  # accepted actions not answered yet (queued or running)


class _Device:
    __slots__ = (
        "backend",
        "cond",
        "deferred_evicts",
        "device",
        "inputs",
        "state",
        "threads",
        "unanswered",
    )

    def __init__(self, device: DeviceId, backend: Backend) -> None:
        self.device = device
        self.backend = backend
        self.state = DeviceState(device, backend.kind.cache_pages, backend.models())
        # one condition for both executors, so each inference submitted or finished also wakes
        # the idle load executor (about 1,000 times a second at 666 requests/s). A condition per
        # executor removed those wake-ups and, on a 2-core host under twice its capacity, cost a
        # client on the same host about 8% of its goodput: it waited longer for a core and read
        # more answers late (BENCHMARKS.md s.41). Measure that case before splitting it.
        self.cond = threading.Condition()
        # action id -> (action, received_ns): accepted, not answered yet
        self.unanswered: dict[int, tuple[LoadWeights | Infer, int]] = {}
        # action id -> inputs of a queued Infer
        self.inputs: dict[int, list[Mapping[str, npt.NDArray[np.generic]]]] = {}
        # models whose backend.evict waits for the running action of that executor
        self.deferred_evicts: dict[Executor, list[str]] = {Executor.INFER: [], Executor.LOAD: []}
        self.threads: list[threading.Thread] = []


def _message(e: BaseException) -> str:
    text = str(e)
    return text if text else type(e).__name__


def _refusal(
    action: Action, status: ActionStatus, received_ns: int, now_ns: int, detail: str
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


class WorkerRuntime:
    """Runs actions on devices in real time. See the module docstring.

    ``devices``: one ``(device id, backend)`` per device. ``on_result(result, outputs)`` receives
    every result, with the outputs (one mapping per request) of a successful ``Infer``, else
    ``None``. ``clock_ns``: the worker's clock; every timestamp in results comes from it.
    ``spin_ns``: see "Start precision" in the module docstring. Threads start at once.
    """

    def __init__(
        self,
        devices: Sequence[tuple[DeviceId, Backend]],
        on_result: OnResult,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        *,
        spin_ns: int = SPIN_NS,
    ) -> None:
        if spin_ns < 0:
            raise ValueError(f"spin_ns must be >= 0, got {spin_ns}")
        self._on_result = on_result
        self._clock = clock_ns
        self._spin_ns = spin_ns
        self._closed = False
        self._close_lock = threading.Lock()
        self._devices: dict[DeviceId, _Device] = {}
        for device, backend in devices:
            if device in self._devices:
                raise ValueError(f"device {device} is listed twice")
            self._devices[device] = _Device(device, backend)
        for dev in self._devices.values():
            for executor in Executor:
                t = threading.Thread(
                    target=self._serve,
                    args=(dev, executor),
                    name=f"clockwork-{dev.device}-{executor.value}",
                    daemon=True,
                )
                dev.threads.append(t)
                t.start()

    # ----------------------------------------------------------------- public

    @property
    def devices(self) -> tuple[DeviceId, ...]:
        return tuple(self._devices)

    def backend(self, device: DeviceId) -> Backend:
        return self._devices[device].backend

    def state(self, device: DeviceId) -> DeviceSnapshot:
        """A consistent snapshot of ``device`` (``KeyError`` for an unknown device)."""
        dev = self._devices[device]
        with dev.cond:
            s = dev.state
            running_infer = s.busy(Executor.INFER)
            running_load = s.busy(Executor.LOAD)
            return DeviceSnapshot(
                device=device,
                total_pages=s.total_pages,
                free_pages=s.free_pages,
                resident_models=s.resident_models(),
                queued_infer=s.queued(Executor.INFER),
                queued_load=s.queued(Executor.LOAD),
                running_infer=None if running_infer is None else running_infer.action_id,
                running_load=None if running_load is None else running_load.action_id,
                unanswered=len(dev.unanswered),
            )

    def refresh_models(self) -> tuple[str, ...]:
        """Register, on each device, the models its backend has gained since (a repository
        rescan added them); return their names, sorted. Known models are left as they are:
        their pages and weights versions must not change under queued or running actions."""
        added: set[str] = set()
        for dev in self._devices.values():
            models = dict(dev.backend.models())  # a copy: the backend may grow it meanwhile
            with dev.cond:
                for name, model in models.items():
                    if name not in dev.state.models:
                        dev.state.register_model(model)
                        added.add(name)
        return tuple(sorted(added))

    def submit(self, action: Action, inputs: Inputs | None = None) -> None:
        """Hand ``action`` to its device (thread-safe). Results that are known at once (invalid
        actions, evictions) go to ``on_result`` before this returns; the rest come from the
        executors."""
        dev = self._devices.get(action.device)
        if dev is None:
            now = self._clock()
            self._report(
                _refusal(
                    action,
                    ActionStatus.UNKNOWN_DEVICE,
                    now,
                    now,
                    f"this worker has no device {action.device}",
                ),
                None,
            )
            return
        with dev.cond:
            now = self._clock()
            result = self._receive(dev, action, inputs, now)
            if result is None:
                dev.cond.notify_all()
        if result is not None:
            self._report(result, None)

    def wake(self) -> None:
        """Make every executor look at its queue again now (after a jump of a fake clock)."""
        for dev in self._devices.values():
            with dev.cond:
                dev.cond.notify_all()

    def close(self, timeout_s: float | None = None) -> None:
        """Stop: see "Shutdown rule" in the module docstring. Idempotent."""
        with self._close_lock:
            for dev in self._devices.values():
                with dev.cond:
                    self._closed = True
                    dev.cond.notify_all()
            current = threading.current_thread()
            for dev in self._devices.values():
                for t in dev.threads:
                    if t is not current:
                        t.join(timeout_s)
            drained: list[ActionResult] = []
            for dev in self._devices.values():
                with dev.cond:
                    now = self._clock()
                    for action, received_ns in dev.unanswered.values():
                        drained.append(
                            _refusal(
                                action,
                                ActionStatus.EXECUTION_ERROR,
                                received_ns,
                                now,
                                SHUTDOWN_DETAIL,
                            )
                        )
                    dev.unanswered.clear()
                    dev.inputs.clear()
        for result in drained:
            self._report(result, None)

    def __enter__(self) -> WorkerRuntime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- receiving

    def _receive(
        self, dev: _Device, action: Action, inputs: Inputs | None, now: int
    ) -> ActionResult | None:
        """Under ``dev``'s lock: queue ``action`` (None) or answer it at once."""
        if self._closed:
            return _refusal(action, ActionStatus.EXECUTION_ERROR, now, now, SHUTDOWN_DETAIL)
        if action.action_id in dev.unanswered:
            return _refusal(
                action,
                ActionStatus.INVALID_INPUT,
                now,
                now,
                f"action id {action.action_id} is still unanswered on this device",
            )
        if inputs is not None:
            if type(action) is not Infer:
                return _refusal(
                    action,
                    ActionStatus.INVALID_INPUT,
                    now,
                    now,
                    f"{type(action).__name__} takes no inputs",
                )
            if len(inputs) != len(action.request_ids):
                return _refusal(
                    action,
                    ActionStatus.INVALID_INPUT,
                    now,
                    now,
                    f"{len(inputs)} inputs for {len(action.request_ids)} requests",
                )
        result = dev.state.receive(action, now)
        if result is None:
            assert isinstance(action, LoadWeights | Infer)
            dev.unanswered[action.action_id] = (action, now)
            if type(action) is Infer:
                dev.inputs[action.action_id] = (
                    list(inputs) if inputs is not None else [{} for _ in action.request_ids]
                )
            return None
        if type(action) is EvictWeights and result.ok:
            return self._evict(dev, action.model, result)
        return result

    def _evict(self, dev: _Device, model: str, result: ActionResult) -> ActionResult:
        """Under ``dev``'s lock, after the state evicted ``model``: free it in the backend, now or
        when the action running on it returns (see the module docstring)."""
        for executor in (Executor.LOAD, Executor.INFER):
            running = dev.state.busy(executor)
            if running is not None and running.model == model:
                dev.deferred_evicts[executor].append(model)
                return result
        try:
            dev.backend.evict(model)
        except Exception as e:
            _log.warning("device %s: backend evict of %r failed: %s", dev.device, model, e)
            return replace(
                result,
                status=ActionStatus.EXECUTION_ERROR,
                detail=f"backend evict failed: {_message(e)}",
            )
        return result

    def _run_deferred_evicts(self, dev: _Device, executor: Executor) -> None:
        """Under ``dev``'s lock, once ``executor``'s backend call returned."""
        models = dev.deferred_evicts[executor]
        if not models:
            return
        for model in models:
            try:
                dev.backend.evict(model)
            except Exception:
                # its result (SUCCESS, from the state) has been reported already
                _log.exception("device %s: deferred backend evict of %r failed", dev.device, model)
        models.clear()
        dev.cond.notify_all()

    # ----------------------------------------------------------------- executors

    def _serve(self, dev: _Device, executor: Executor) -> None:
        try:
            while self._step(dev, executor):
                pass
        except BaseException:  # a bug; the queued actions are still answered by close()
            _log.exception("device %s: %s executor died", dev.device, executor.value)

    def _step(self, dev: _Device, executor: Executor) -> bool:
        """One turn of an executor; False when it is to stop."""
        answered = False
        inputs: list[Mapping[str, npt.NDArray[np.generic]]] = []
        with dev.cond:
            if self._closed:
                return False
            now = self._clock()
            decision = dev.state.next(executor, now)
            if decision is None:
                dev.cond.wait()
                return True
            if type(decision) is Wait:
                remaining = decision.until_ns - now
                if remaining > self._spin_ns:
                    dev.cond.wait(min((remaining - self._spin_ns) / 1e9, MAX_SLEEP_S))
                    return True
            elif type(decision) is Refused:
                answered = dev.unanswered.pop(decision.result.action_id, None) is not None
                dev.inputs.pop(decision.result.action_id, None)
            else:
                assert type(decision) is Started
                if type(decision.action) is Infer:
                    inputs = dev.inputs.pop(decision.action.action_id, [])
                else:
                    # never copy into pages whose backend eviction waits for an inference
                    while dev.deferred_evicts[Executor.INFER]:
                        dev.cond.wait()
        # outside the lock
        if type(decision) is Wait:
            self._spin_until(decision.until_ns)
        elif type(decision) is Refused:
            if answered:
                self._report(decision.result, None)
        else:
            assert type(decision) is Started
            self._execute(dev, executor, decision, inputs)
        return True

    def _spin_until(self, until_ns: int) -> None:
        """Poll the clock until ``until_ns``, yielding the GIL; bounded in real time so that a
        fake clock that does not move cannot hold the executor here."""
        give_up = time.monotonic_ns() + 2 * self._spin_ns
        while self._clock() < until_ns and not self._closed:
            if time.monotonic_ns() > give_up:
                return
            time.sleep(0)

    def _execute(
        self,
        dev: _Device,
        executor: Executor,
        started: Started,
        inputs: list[Mapping[str, npt.NDArray[np.generic]]],
    ) -> None:
        action = started.action
        times: PhaseTimes | None = None
        outputs: Outputs | None = None
        error: str | None = None
        try:
            if type(action) is Infer:
                out = dev.backend.infer(action.model, action.batch_size, inputs)
                times = out.times
                outputs = out.outputs
                if len(outputs) != len(inputs):
                    error = f"backend returned {len(outputs)} outputs for {len(inputs)} requests"
            else:
                times = dev.backend.load(action.model)
        except Exception as e:
            error = _message(e)
            _log.debug(
                "device %s: %s of %r failed: %s", dev.device, executor.value, action.model, error
            )
        ended = self._clock()
        with dev.cond:
            self._run_deferred_evicts(dev, executor)
            result = dev.state.finish(
                executor,
                started.began_ns,
                ended,
                exec_ns=None if times is None or error is not None else times.exec_ns,
                input_copy_ns=0 if times is None or error is not None else times.input_copy_ns,
                output_copy_ns=0 if times is None or error is not None else times.output_copy_ns,
                error=error,
            )
            answered = dev.unanswered.pop(action.action_id, None) is not None
            dev.cond.notify_all()
        if answered:
            self._report(result, outputs if result.ok and type(action) is Infer else None)

    def _report(self, result: ActionResult, outputs: Outputs | None) -> None:
        try:
            self._on_result(result, outputs)
        except Exception:
            _log.exception("on_result raised for action %d", result.action_id)
