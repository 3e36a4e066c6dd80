"""The controller's view of the cluster: devices, their pages, resident models, timelines.

This is what the controller believes, which may lag the workers' truth; results correct it.
Page accounting here never lets ``free_pages`` go below zero: reservation fails instead.
"""

from __future__ import annotations

from collections import OrderedDict

from clockwork.core.ids import DeviceId
from clockwork.core.profile import DeviceKind


class Residency:
    """A model's weights on one device: loading (``ready`` False) or loaded."""

    __slots__ = ("infers_in_flight", "last_used_ns", "model", "pages", "ready", "ready_at_ns")

    def __init__(self, model: str, pages: int, ready: bool, ready_at_ns: int) -> None:
        self.model = model
        self.pages = pages
        self.ready = ready
        self.ready_at_ns = ready_at_ns
        self.last_used_ns = ready_at_ns
        self.infers_in_flight = 0


class DeviceView:
    """One device as the controller sees it.

    ``infer_free_at_ns``/``load_free_at_ns``: when the inference / load executor is predicted to
    be idle, given every action sent to it. ``resident`` is in least-recently-used order.
    ``models``: the models its worker can serve, shared by the worker's devices (None: all of
    them); only these may be loaded here. ``estimates_key``: what its models' estimates are
    kept under in ``PolicyBase.estimates`` (its kind's name, or with per-device estimates a
    key of its own).
    """

    __slots__ = (
        "device",
        "estimates_key",
        "free_pages",
        "infer_free_at_ns",
        "infers_in_flight",
        "kind",
        "kind_name",
        "load_free_at_ns",
        "loads_in_flight",
        "models",
        "resident",
        "total_pages",
    )

    def __init__(
        self,
        device: DeviceId,
        kind: DeviceKind,
        models: frozenset[str] | None = None,
        estimates_key: str | None = None,
    ) -> None:
        self.device = device
        self.kind = kind
        # the kind's name, read on every plan step (DeviceKind is a plain Python class)
        self.kind_name = kind.name
        self.estimates_key = kind.name if estimates_key is None else estimates_key
        self.models = models
        self.total_pages = kind.cache_pages
        self.free_pages = kind.cache_pages
        self.resident: OrderedDict[str, Residency] = OrderedDict()
        self.infer_free_at_ns = 0
        self.load_free_at_ns = 0
        self.infers_in_flight = 0
        self.loads_in_flight = 0

    def serves(self, model: str) -> bool:
        """Whether this device's worker can load ``model`` (planners inline this test)."""
        return self.models is None or model in self.models

    def reserve(self, model: str, pages: int, ready: bool, ready_at_ns: int) -> Residency | None:
        """Claim pages for ``model``; None if they do not fit or it is already here."""
        if model in self.resident or pages > self.free_pages:
            return None
        self.free_pages -= pages
        r = Residency(model, pages, ready, ready_at_ns)
        self.resident[model] = r
        return r

    def release(self, model: str) -> Residency | None:
        r = self.resident.pop(model, None)
        if r is not None:
            self.free_pages += r.pages
        return r

    def touch(self, model: str, now_ns: int) -> None:
        r = self.resident.get(model)
        if r is not None:
            r.last_used_ns = now_ns
            self.resident.move_to_end(model)

    def used_pages(self) -> int:
        return sum(r.pages for r in self.resident.values())
