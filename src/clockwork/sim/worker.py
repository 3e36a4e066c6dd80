"""Simulated worker devices: the real worker rules (``DeviceState``) with profiled durations.

The controller cannot tell these from real workers: the same actions, windows, statuses and
timestamps; only the passage of time is virtual.
"""

from __future__ import annotations

from collections.abc import Callable

from clockwork.core.actions import Action, ActionResult, Infer, LoadWeights
from clockwork.core.events import ModelInfo
from clockwork.core.ids import DeviceId
from clockwork.core.profile import DeviceKind, ModelProfile
from clockwork.sim.noise import Noise
from clockwork.sim.turnarounds import Turnarounds
from clockwork.worker.device_state import (
    DeviceState,
    Executor,
    Refused,
    Started,
    Wait,
    WorkerModel,
)

# (when, executor, device) -> the simulator schedules a wake-up of that executor
ScheduleWake = Callable[[int, "SimDevice", Executor], None]
# (when, device, executor, began_ns) -> the simulator schedules the end of a started action
ScheduleDone = Callable[[int, "SimDevice", Executor, int], None]


def worker_model_for(info: ModelInfo, kind: DeviceKind) -> tuple[ModelProfile, WorkerModel] | None:
    """``info``'s profile on ``kind`` and what a worker checks actions against; None if the
    model has no profile for that kind."""
    profile = info.profile_for(kind.name)
    if profile is None:
        return None
    return profile, WorkerModel(info.name, profile.pages_for(kind), profile.batch_sizes)


class SimDevice:
    """One simulated device: rules, profiles, noise, and the pending wake of each executor."""

    __slots__ = (
        "_exec_ns",
        "_load_ns",
        "began_infer_ns",
        "began_load_ns",
        "device",
        "kind",
        "noise",
        "profiles",
        "resume_infer_ns",
        "state",
        "turnaround_ns",
        "turnarounds",
        "wake_infer_ns",
        "wake_load_ns",
    )

    def __init__(
        self,
        device: DeviceId,
        kind: DeviceKind,
        noise: Noise,
        turnaround_ns: int = 0,
        turnarounds: Turnarounds | None = None,
    ) -> None:
        self.device = device
        self.kind = kind
        self.state = DeviceState(device, kind.cache_pages)
        self.noise = noise
        self.profiles: dict[str, ModelProfile] = {}
        # the profiles' durations, as plain dicts read once per action
        self._exec_ns: dict[str, dict[int, int]] = {}
        self._load_ns: dict[str, int] = {}
        # the pending wake-up of each executor (-1: none)
        self.wake_infer_ns = -1
        self.wake_load_ns = -1
        # when each executor's running action began (the simulator's end event reads it)
        self.began_infer_ns = -1
        self.began_load_ns = -1
        # the worker's turnaround after each Infer (``HostConfig.worker_turnaround_ns``): the
        # inference executor starts nothing before ``resume_infer_ns``
        self.turnaround_ns = turnaround_ns
        # or each drawn from the measured ones (``HostConfig.worker_turnaround_quantiles_ns``)
        self.turnarounds = turnarounds
        self.resume_infer_ns = -1

    def infer_ended(self, now_ns: int) -> None:
        """An Infer ended at ``now_ns``: the next starts after the worker's turnaround."""
        drawn = self.turnarounds
        self.resume_infer_ns = now_ns + (self.turnaround_ns if drawn is None else drawn.next_ns())

    def wake_ns(self, executor: Executor) -> int:
        return self.wake_infer_ns if executor is Executor.INFER else self.wake_load_ns

    def set_wake_ns(self, executor: Executor, when_ns: int) -> None:
        if executor is Executor.INFER:
            self.wake_infer_ns = when_ns
        else:
            self.wake_load_ns = when_ns

    def add_model(self, profile: ModelProfile, model: WorkerModel) -> None:
        """Register a model whose ``WorkerModel`` was made once for every device of a kind (a
        cluster of thousands of models would otherwise make one per device)."""
        self.profiles[model.name] = profile
        self._exec_ns[model.name] = dict(profile.exec_ns)
        self._load_ns[model.name] = profile.load_ns
        self.state.register_model(model)

    def duration_ns(self, action: LoadWeights | Infer, now_ns: int = 0) -> int:
        """How long ``action``, starting at ``now_ns``, runs."""
        if type(action) is Infer:
            return self.noise.apply(self._exec_ns[action.model][action.batch_size], now_ns)
        return self.noise.apply(self._load_ns[action.model], now_ns)

    def receive(self, action: Action, now_ns: int) -> ActionResult | None:
        return self.state.receive(action, now_ns)

    def advance(
        self,
        executor: Executor,
        now_ns: int,
        done: ScheduleDone,
        wake: ScheduleWake,
        out: list[ActionResult],
    ) -> None:
        """Let ``executor`` start what it can at ``now_ns``; refusals go to ``out``."""
        if executor is Executor.INFER and now_ns < self.resume_infer_ns:
            if self.wake_infer_ns != self.resume_infer_ns:
                self.wake_infer_ns = self.resume_infer_ns
                wake(self.resume_infer_ns, self, executor)
            return
        while True:
            d = self.state.next(executor, now_ns)
            if d is None:
                return
            if type(d) is Refused:
                out.append(d.result)
                continue
            if type(d) is Started:
                done(now_ns + self.duration_ns(d.action, now_ns), self, executor, now_ns)
                return
            assert type(d) is Wait
            if self.wake_ns(executor) != d.until_ns:
                self.set_wake_ns(executor, d.until_ns)
                wake(d.until_ns, self, executor)
            return
