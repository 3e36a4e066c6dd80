"""Identifiers shared by controller, workers and simulator."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, eq=False)
class DeviceId:
    """One device of one worker: ``worker/index`` (for example ``w0/0``)."""

    worker: str
    index: int
    # device ids key the scheduler's hottest dictionaries: hash once
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.worker, self.index)))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        # written out: compiled, the generated one compares by identity (BENCHMARKS.md s.27;
        # tests/core/test_value_inits.py fails under `make test-compiled` without it)
        if self is other:
            return True
        if type(other) is not DeviceId:
            return NotImplemented
        return self.index == other.index and self.worker == other.worker

    def __lt__(self, other: DeviceId) -> bool:
        return (self.worker, self.index) < (other.worker, other.index)

    def __str__(self) -> str:
        return f"{self.worker}/{self.index}"

    @staticmethod
    def parse(text: str) -> DeviceId:
        worker, sep, index = text.rpartition("/")
        if not sep or not worker or not index.isdigit():
            raise ValueError(f"device id {text!r} is not of the form WORKER/INDEX")
        return DeviceId(worker, int(index))
