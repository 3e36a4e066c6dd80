"""A backend that executes nothing: each action takes its profiled duration (DESIGN.md s.4).

``load`` and ``infer`` block for the profile's ``load_ns`` / ``exec_ns[batch_size]``, optionally
multiplied by seeded log-normal noise (``exp(N(0, noise_sigma))``, the simulator's noise model, so
the profile is the median), and report that duration as the execution phase (no copy phases).
The duration reported is the one asked of ``sleep``, not a measurement, so a fake ``sleep`` gives
exact, reproducible figures.

Outputs are placeholders: one mapping per request of the batch,
``{"output": np.zeros(max(1, profile.output_bytes // 4), dtype=np.float32)}`` (a float32 vector
of the profiled output size).

It keeps its own record of the models it holds and raises ``BackendError`` for an unknown model,
a load of a model it holds, an inference on a model it does not hold, an unsupported batch size,
too many inputs, or an eviction of a model it does not hold. The runtime's ``DeviceState`` refuses
all of these before they get here; this is defence in depth.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from clockwork.core.profile import DeviceKind, ModelProfile
from clockwork.worker.backends.base import BackendError, InferOutput, PhaseTimes
from clockwork.worker.device_state import WorkerModel


class EmulatedBackend:
    """One emulated device of ``kind`` serving the models of ``profiles`` (keyed by model name)."""

    name = "emulated"

    def __init__(
        self,
        kind: DeviceKind,
        profiles: Mapping[str, ModelProfile],
        seed: int = 0,
        noise_sigma: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if noise_sigma < 0 or not math.isfinite(noise_sigma):
            raise ValueError(f"noise_sigma must be finite and >= 0, got {noise_sigma}")
        self.kind = kind
        self._profiles = dict(profiles)
        self._sigma = noise_sigma
        self._rng = random.Random(seed)
        self._sleep = sleep
        # the runtime calls load and infer from two threads at once
        self._lock = threading.Lock()
        self._loaded: set[str] = set()

    # ----------------------------------------------------------------- Backend

    def models(self) -> Mapping[str, WorkerModel]:
        return {
            name: WorkerModel(name, p.pages_for(self.kind), p.batch_sizes)
            for name, p in self._profiles.items()
        }

    def load(self, model: str) -> PhaseTimes:
        profile = self._profile(model)
        with self._lock:
            if model in self._loaded:
                raise BackendError(f"model {model!r} is already loaded")
        duration = self._run(profile.load_ns)
        with self._lock:
            self._loaded.add(model)
        return PhaseTimes(input_copy_ns=0, exec_ns=duration, output_copy_ns=0)

    def evict(self, model: str) -> None:
        self._profile(model)
        with self._lock:
            if model not in self._loaded:
                raise BackendError(f"model {model!r} is not loaded")
            self._loaded.remove(model)

    def infer(
        self, model: str, batch_size: int, inputs: Sequence[Mapping[str, npt.NDArray[np.generic]]]
    ) -> InferOutput:
        profile = self._profile(model)
        with self._lock:
            if model not in self._loaded:
                raise BackendError(f"model {model!r} is not loaded")
        exec_ns = profile.exec_ns.get(batch_size)
        if exec_ns is None:
            raise BackendError(
                f"model {model!r}: batch size {batch_size} is not one of {profile.batch_sizes}"
            )
        if len(inputs) > batch_size:
            raise BackendError(f"{len(inputs)} inputs exceed batch size {batch_size}")
        duration = self._run(exec_ns)
        size = max(1, profile.output_bytes // 4)
        outputs: list[dict[str, npt.NDArray[np.generic]]] = [
            {"output": np.zeros(size, dtype=np.float32)} for _ in inputs
        ]
        return InferOutput(outputs, PhaseTimes(input_copy_ns=0, exec_ns=duration, output_copy_ns=0))

    # ----------------------------------------------------------------- inside

    def loaded(self) -> frozenset[str]:
        """The models this backend holds now."""
        with self._lock:
            return frozenset(self._loaded)

    def _profile(self, model: str) -> ModelProfile:
        profile = self._profiles.get(model)
        if profile is None:
            raise BackendError(f"unknown model {model!r}")
        return profile

    def _run(self, base_ns: int) -> int:
        """Block for ``base_ns`` times the noise factor; return the duration asked for."""
        duration = base_ns
        if self._sigma > 0:
            with self._lock:
                factor = math.exp(self._rng.gauss(0.0, self._sigma))
            duration = max(1, round(base_ns * factor))
        self._sleep(duration / 1e9)
        return duration
