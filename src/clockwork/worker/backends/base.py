"""The one small interface between the worker runtime and whatever executes actions.

The runtime (window checks, executors, page counts, versions: ``DeviceState``) decides *whether
and when*; a backend does the work and says how long each phase took. Calls are blocking and made
from the runtime's executor threads: at most one ``infer`` at a time per device, and at most one
``load`` beside it; ``evict`` is never called for a model whose ``infer`` is running.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from clockwork.core.profile import DeviceKind
from clockwork.worker.device_state import WorkerModel


@dataclass(frozen=True, slots=True)
class PhaseTimes:
    """Measured durations of one action's phases, in ns (0 where a backend has no such phase)."""

    input_copy_ns: int
    exec_ns: int
    output_copy_ns: int


@dataclass(frozen=True, slots=True)
class InferOutput:
    """One output mapping per request of the batch (padding stripped), and the phase times."""

    outputs: list[dict[str, npt.NDArray[np.generic]]]
    times: PhaseTimes


class BackendError(Exception):
    """The backend failed an action (the runtime reports EXECUTION_ERROR with this message)."""


class Backend(Protocol):
    """One device's executor of loads, evictions and inferences."""

    name: str
    kind: DeviceKind

    def models(self) -> Mapping[str, WorkerModel]:
        """Every model this device can load (name, pages it needs here, batch sizes)."""
        ...

    def load(self, model: str) -> PhaseTimes:
        """Copy ``model``'s weights from host memory into free pages of this device's cache."""
        ...

    def evict(self, model: str) -> None:
        """Free ``model``'s pages."""
        ...

    def infer(
        self, model: str, batch_size: int, inputs: Sequence[Mapping[str, npt.NDArray[np.generic]]]
    ) -> InferOutput:
        """Run one batch: ``len(inputs) <= batch_size`` requests, padded to ``batch_size``."""
        ...
