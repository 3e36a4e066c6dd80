"""Closed loop: ``concurrency`` clients per model, each with one request outstanding at a time."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from clockwork.core.errors import InvalidInputError
from clockwork.workload._common import check_int, check_models
from clockwork.workload.base import Arrival


@dataclass(frozen=True, slots=True)
class ClosedLoop:
    """``concurrency`` clients per model; each sends its first request at the start of the run and
    its next one ``think_ns`` after each response, until ``duration_ns``.

    The first requests are staggered by one nanosecond each, in the order client 0 of every model,
    then client 1 of every model, ..., so their order is stable: the i-th of them is sent at
    ``i`` ns. No arrival is at or after ``duration_ns`` (a response whose follow-up would be
    returns ``None`` and that client stops).

    The generator is stateless: every ``on_response`` call yields the follow-up of the answered
    request (same model and priority, this workload's SLO). The driver must call it once per
    answered request, as the ``Workload`` protocol says.
    """

    models: Sequence[str]
    concurrency: int
    slo_ns: int
    duration_ns: int
    think_ns: int = 0
    _model_set: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        owner = "ClosedLoop"
        models = check_models(owner, self.models)
        object.__setattr__(self, "models", models)
        object.__setattr__(self, "_model_set", frozenset(models))
        check_int(owner, "concurrency", self.concurrency, minimum=1)
        check_int(owner, "slo_ns", self.slo_ns, minimum=1)
        check_int(owner, "duration_ns", self.duration_ns, minimum=1)
        check_int(owner, "think_ns", self.think_ns, minimum=0)

    def describe(self) -> dict[str, object]:
        return {
            "kind": "closed_loop",
            "synthetic": True,
            "models": list(self.models),
            "num_models": len(self.models),
            "concurrency": self.concurrency,
            "slo_ns": self.slo_ns,
            "think_ns": self.think_ns,
            "duration_ns": self.duration_ns,
            "initial_stagger_ns": 1,
        }

    def arrivals(self) -> Iterator[Arrival]:
        i = 0
        for _client in range(self.concurrency):
            for model in self.models:
                if i >= self.duration_ns:
                    return
                yield Arrival(i, model, self.slo_ns)
                i += 1

    def on_response(self, arrival: Arrival, now_ns: int) -> Arrival | None:
        if arrival.model not in self._model_set:
            raise InvalidInputError(
                f"ClosedLoop: response for model {arrival.model!r}, which this workload never sent"
            )
        if now_ns < arrival.time_ns:
            raise InvalidInputError(
                f"ClosedLoop: response at {now_ns} ns is before its request at {arrival.time_ns} ns"
            )
        next_ns = now_ns + self.think_ns
        if next_ns >= self.duration_ns:
            return None
        return Arrival(next_ns, arrival.model, self.slo_ns, arrival.priority)
