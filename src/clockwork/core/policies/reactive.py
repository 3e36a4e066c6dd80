"""The reactive baseline (DESIGN.md s.5): what common servers do, to be measured against. Per-model
FIFO queues; a device takes work when it has a free slot, from the model (among those it holds)
whose oldest request waited longest, batching whatever is queued up to the largest supported
size; a request for a model on no device triggers a load on the least-loaded device, evicting
least-recently-used idle models (loaded, with nothing running or queued). No deadline awareness:
nothing is refused, late results are still delivered (and count as misses). The one exception: a
request for a model that no connected device can ever run (no worker serves it, or it fits no
device) is refused at arrival, as it would otherwise wait for ever.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field

from clockwork.core.actions import Infer
from clockwork.core.cluster import DeviceView
from clockwork.core.estimator import EstimatorConfig
from clockwork.core.policies.base import PendingRequest, PolicyBase
from clockwork.core.requests import ResponseStatus
from clockwork.core.units import NEVER_NS


@dataclass(frozen=True, slots=True)
class ReactiveConfig:
    # Infers outstanding per device; 2 keeps the device busy across one network round trip
    max_outstanding_per_device: int = 2
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)


class ReactivePolicy(PolicyBase):
    name = "reactive"

    def __init__(self, config: ReactiveConfig) -> None:
        super().__init__(config.estimator)
        self.config = config
        # models with queued requests, in the order their current oldest request arrived
        self._waiting: dict[str, deque[PendingRequest]] = {}
        # waiting models on no device and loading onto none: the misses to load
        self._unplaced: dict[str, None] = {}

    def accept(self, p: PendingRequest, now_ns: int) -> None:
        if not self.devices:
            self.respond(p, ResponseStatus.OVERLOADED, now_ns, "no worker is connected")
            return
        why = self.unservable(p.request.model)
        if why:
            self.respond(p, ResponseStatus.DEADLINE_INFEASIBLE, now_ns, why)
            return
        q = self._waiting.get(p.request.model)
        if q is None:
            self._waiting[p.request.model] = deque([p])
        else:
            q.append(p)
        if p.cold:
            self._unplaced[p.request.model] = None

    def requeue(self, p: PendingRequest, now_ns: int) -> None:
        q = self._waiting.get(p.request.model)
        if q is None:
            self._waiting[p.request.model] = deque([p])
        else:
            q.appendleft(p)
        if self.is_cold(p.request.model):
            self._unplaced[p.request.model] = None

    def drop_queued(self, model: str) -> list[PendingRequest]:
        self._unplaced.pop(model, None)
        return list(self._waiting.pop(model, ()))

    def unqueue(self, p: PendingRequest, now_ns: int) -> None:
        model = p.request.model
        q = self._waiting.get(model)
        if q is None or p not in q:
            return
        q.remove(p)
        if not q:
            del self._waiting[model]
            self._unplaced.pop(model, None)

    def on_residency_gone(self, view: DeviceView, model: str) -> None:
        if model in self._waiting and self.is_cold(model):
            self._unplaced[model] = None

    def plan(self, now_ns: int) -> None:
        if not self._waiting or not self.devices:
            return
        limit = self.config.max_outstanding_per_device
        for view in self.devices.values():
            while view.infers_in_flight < limit and self._dispatch_one(view, now_ns):
                pass
        if self._unplaced:
            self._load_misses(now_ns)

    def _load_misses(self, now_ns: int) -> None:
        """Load misses in the order they happened; the first that fits nowhere waits, and so
        do the ones behind it (a FIFO load queue, as common servers have). A miss that no
        connected device serves (its workers left after it was queued) is passed over: it waits
        for such a device without holding up the others."""
        for name in list(self._unplaced):
            if name not in self._waiting or not self.is_cold(name):
                del self._unplaced[name]
                continue
            if self.unservable(name):
                continue
            placed = False
            for view in sorted(self.devices.values(), key=_load_order):
                if view.models is not None and name not in view.models:
                    continue
                profile = self.models[name].profile_for(view.kind_name)
                if profile is None:
                    continue
                pages = profile.pages_for(view.kind)
                if self.make_room(view, pages, now_ns, self._waiting.__contains__):
                    placed = (
                        self.start_load(
                            view, name, pages, max(now_ns, view.load_free_at_ns), NEVER_NS, now_ns
                        )
                        is not None
                    )
                    break
            if not placed:
                return
            del self._unplaced[name]

    def _dispatch_one(self, view: DeviceView, now_ns: int) -> bool:
        # the model, among those ready here, whose oldest request has waited longest; scan
        # whichever of the two sets is smaller (in overload thousands of models wait)
        chosen: str | None = None
        oldest = 0
        waiting = self._waiting
        resident = view.resident
        names = waiting if len(waiting) <= len(resident) else resident
        for name in names:
            res = resident.get(name)
            q = waiting.get(name)
            if res is None or q is None or not res.ready:
                continue
            arrived = q[0].request.arrival_ns
            if chosen is None or arrived < oldest:
                chosen, oldest = name, arrived
        if chosen is None:
            return False
        q = self._waiting[chosen]
        e = self.estimates[chosen][view.estimates_key]
        sizes = e.batch_sizes
        n = min(len(q), sizes[-1])
        i = bisect_left(sizes, n)
        b = sizes[i] if i < len(sizes) else sizes[-1]
        batch = [q.popleft() for _ in range(min(n, b))]
        if not q:
            del self._waiting[chosen]
        expected = e.exec_ns(b)
        start = max(now_ns, view.infer_free_at_ns)
        view.infer_free_at_ns = start + expected
        view.touch(chosen, now_ns)
        self.send(
            Infer(
                self.new_action_id(),
                view.device,
                chosen,
                b,
                tuple(p.request.request_id for p in batch),
                now_ns,
                NEVER_NS,
                expected,
            ),
            view,
            now_ns,
            batch,
        )
        return True


def _load_order(view: DeviceView) -> tuple[int, int]:
    return (view.loads_in_flight + view.infers_in_flight, view.load_free_at_ns)
