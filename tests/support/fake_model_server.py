"""A ``ModelServer`` without a controller, for testing the protocol layers on their own.

Two models: ``add`` (inputs ``a``, ``b``: FP32 [4], output ``sum`` = a + b and ``diff`` = a - b,
max batch 8) and ``ident`` (input ``x``: INT32 [-1], output ``y`` = x, max batch 4). Behaviour
switches the tests use: a ``timeout_us`` below ``INFEASIBLE_US`` is refused as
``DEADLINE_INFEASIBLE``; priority ``OVERLOAD_PRIORITY`` is refused as ``OVERLOADED``; every call
is recorded in ``calls``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np

from clockwork.core.signature import ModelSignature, TensorSignature
from clockwork.frontend.api import (
    DurationStat,
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

INFEASIBLE_US = 1000
OVERLOAD_PRIORITY = 99

SIGNATURES = {
    "add": ModelSignature(
        inputs=(TensorSignature("a", "FP32", (4,)), TensorSignature("b", "FP32", (4,))),
        outputs=(TensorSignature("sum", "FP32", (4,)), TensorSignature("diff", "FP32", (4,))),
        max_batch_size=8,
    ),
    "ident": ModelSignature(
        inputs=(TensorSignature("x", "INT32", (-1,)),),
        outputs=(TensorSignature("y", "INT32", (-1,)),),
        max_batch_size=4,
    ),
}

_TRITON_TYPES = {"FP32": "TYPE_FP32", "INT32": "TYPE_INT32"}


class FakeModelServer:
    name = "clockwork"
    version = "0.1.0"

    def __init__(self) -> None:
        self.loaded = set(SIGNATURES)
        self.calls: list[InferenceCall] = []
        self.counts: dict[str, int] = dict.fromkeys(SIGNATURES, 0)
        self.is_ready = True
        # what ``refuse_early`` raises (None: nothing), and the (model, timeout) it was asked about
        self.early_refusal: FrontendError | None = None
        self.asked_early: list[tuple[str, int]] = []
        # the samples each of those calls was said to carry
        self.asked_samples: list[int] = []

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.is_ready

    def _signature(self, model: str, version: str) -> ModelSignature:
        sig = SIGNATURES.get(model)
        if sig is None:
            raise FrontendError(ErrorKind.NOT_FOUND, f"unknown model {model!r}", "MODEL_NOT_FOUND")
        if version and version not in {str(v) for v in sig.versions}:
            raise FrontendError(
                ErrorKind.NOT_FOUND,
                f"model {model!r} has no version {version!r}",
                "MODEL_NOT_FOUND",
            )
        return sig

    def model_metadata(self, model: str, version: str = "") -> ModelMetadata:
        sig = self._signature(model, version)
        return ModelMetadata(
            model,
            tuple(str(v) for v in sig.versions),
            sig.platform,
            sig.inputs,
            sig.outputs,
            sig.max_batch_size,
        )

    def model_ready(self, model: str, version: str = "") -> bool:
        self._signature(model, version)
        return model in self.loaded

    def model_config(self, model: str, version: str = "") -> Mapping[str, object]:
        sig = self._signature(model, version)

        def tensors(ts: Sequence[TensorSignature]) -> list[dict[str, object]]:
            return [
                {"name": t.name, "data_type": _TRITON_TYPES[t.datatype], "dims": list(t.shape)}
                for t in ts
            ]

        return {
            "name": model,
            "platform": sig.platform,
            "backend": sig.platform,
            "max_batch_size": sig.max_batch_size,
            "input": tensors(sig.inputs),
            "output": tensors(sig.outputs),
            "version_policy": {"specific": {"versions": list(sig.versions)}},
        }

    def refuse_early(
        self, model: str, version: str, timeout_us: int, spent_ns: int, samples: int = 1
    ) -> None:
        self.asked_early.append((model, timeout_us))
        self.asked_samples.append(samples)
        if self.early_refusal is not None:
            raise self.early_refusal

    async def infer(self, call: InferenceCall) -> InferenceResult:
        self.calls.append(call)
        sig = self._signature(call.model, call.version)
        if call.model not in self.loaded:
            raise FrontendError(
                ErrorKind.UNAVAILABLE, f"model {call.model!r} is not loaded", "MODEL_NOT_READY"
            )
        if call.timeout_us is not None and call.timeout_us < INFEASIBLE_US:
            raise FrontendError(
                ErrorKind.DEADLINE_INFEASIBLE, "deadline cannot be met", "DEADLINE_INFEASIBLE"
            )
        if call.priority == OVERLOAD_PRIORITY:
            raise FrontendError(ErrorKind.OVERLOADED, "overloaded", "OVERLOADED")
        got = {t.name: t for t in call.inputs}
        for spec in sig.inputs:
            t = got.get(spec.name)
            if t is None:
                raise FrontendError(
                    ErrorKind.INVALID_ARGUMENT, f"missing input {spec.name!r}", "BAD_TENSOR"
                )
            if t.datatype != spec.datatype:
                raise FrontendError(
                    ErrorKind.INVALID_ARGUMENT,
                    f"tensor {spec.name!r}: expected {spec.datatype}, got {t.datatype}",
                    "BAD_TENSOR",
                )
        self.counts[call.model] += 1
        if call.model == "add":
            a = got["a"].data.astype(np.float32)
            b = got["b"].data.astype(np.float32)
            if a.shape != b.shape:
                raise FrontendError(
                    ErrorKind.INVALID_ARGUMENT, "a and b differ in shape", "BAD_TENSOR"
                )
            outs = {"sum": a + b, "diff": a - b}
        else:
            outs = {"y": got["x"].data.astype(np.int32)}
        wanted = [o.name for o in call.outputs] or list(outs)
        for name in wanted:
            if name not in outs:
                raise FrontendError(
                    ErrorKind.INVALID_ARGUMENT, f"unknown output {name!r}", "BAD_TENSOR"
                )
        return InferenceResult(
            call.model,
            call.version or "1",
            call.id,
            tuple(Tensor(n, "FP32" if call.model == "add" else "INT32", outs[n]) for n in wanted),
            {"batch_size": 1},
        )

    def repository_index(self, ready_only: bool = False) -> Sequence[RepositoryEntry]:
        out = [
            RepositoryEntry(
                m,
                "1",
                ModelState.READY if m in self.loaded else ModelState.UNAVAILABLE,
                "" if m in self.loaded else "unloaded",
            )
            for m in sorted(SIGNATURES)
        ]
        return [e for e in out if e.state is ModelState.READY] if ready_only else out

    async def load_model(self, model: str) -> None:
        self._signature(model, "")
        self.loaded.add(model)

    async def unload_model(self, model: str) -> None:
        self._signature(model, "")
        self.loaded.discard(model)

    def statistics(self, model: str = "", version: str = "") -> Sequence[ModelStatistics]:
        names = [model] if model else sorted(SIGNATURES)
        for n in names:
            self._signature(n, version)
        return [
            ModelStatistics(
                n,
                "1",
                int(time.time() * 1000) if self.counts[n] else 0,
                self.counts[n],
                self.counts[n],
                DurationStat(self.counts[n], 1000 * self.counts[n]),
                DurationStat(),
                DurationStat(self.counts[n], 10),
                DurationStat(),
                DurationStat(self.counts[n], 900),
                DurationStat(),
                {1: DurationStat(self.counts[n], 900)},
            )
            for n in names
        ]

    def metrics_text(self) -> bytes:
        lines = ["# TYPE clockwork_requests_total counter"]
        lines += [f'clockwork_requests_total{{model="{n}"}} {c}' for n, c in self.counts.items()]
        return ("\n".join(lines) + "\n").encode()
