"""Model and device profiles: what a model costs on a kind of device, and where that was measured.

A profile file is JSON. Example (the shipped ResNet50 v2 on V100-32GB)::

    {"format": "clockwork-profile/1",
     "model": "resnet50_v2", "device_kind": "V100-32GB",
     "weights_bytes": 102160300, "page_size_bytes": 16777216, "weights_pages": 7,
     "load_ns": 8300000, "exec_ns": {"1": 2730000, "2": 4050000, ...},
     "input_bytes": 602112, "output_bytes": 4000,
     "measured": {"by": "...", "where": "...", "how": "..."}}
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from clockwork.core.errors import InvalidInputError
from clockwork.core.units import MIB

PROFILE_FORMAT = "clockwork-profile/1"


@dataclass(frozen=True, slots=True)
class DeviceKind:
    """A kind of device: how its weights cache is cut into pages."""

    name: str
    page_size_bytes: int
    cache_pages: int

    def __post_init__(self) -> None:
        if self.page_size_bytes <= 0 or self.cache_pages <= 0:
            raise InvalidInputError(
                f"device kind {self.name!r}: page size and cache pages must be positive, "
                f"got {self.page_size_bytes} bytes x {self.cache_pages} pages"
            )

    @property
    def cache_bytes(self) -> int:
        return self.page_size_bytes * self.cache_pages


# 21.5 GiB of a V100-32GB's memory as 16 MiB pages, as in the Clockwork authors' setup.
V100_32GB = DeviceKind(name="V100-32GB", page_size_bytes=16 * MIB, cache_pages=1376)

DEVICE_KINDS: dict[str, DeviceKind] = {V100_32GB.name: V100_32GB}


@dataclass(frozen=True, slots=True)
class Measurement:
    """Where and how a profile was measured, so that every figure can be traced."""

    by: str
    where: str
    how: str


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """What one model costs on one device kind."""

    model: str
    device_kind: str
    weights_bytes: int
    page_size_bytes: int
    weights_pages: int
    load_ns: int
    exec_ns: Mapping[int, int]
    input_bytes: int
    output_bytes: int
    measured: Measurement
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"profile {self.model!r} on {self.device_kind!r}"
        if not self.exec_ns:
            raise InvalidInputError(f"{where}: exec_ns lists no batch size")
        for b, t in self.exec_ns.items():
            if b <= 0 or t <= 0:
                raise InvalidInputError(
                    f"{where}: batch size {b} has time {t} ns; both must be > 0"
                )
        if self.weights_bytes < 0 or self.load_ns <= 0:
            raise InvalidInputError(f"{where}: weights_bytes >= 0 and load_ns > 0 required")
        if self.weights_pages < math.ceil(self.weights_bytes / self.page_size_bytes):
            raise InvalidInputError(
                f"{where}: {self.weights_pages} pages of {self.page_size_bytes} bytes "
                f"cannot hold {self.weights_bytes} bytes"
            )

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        return tuple(sorted(self.exec_ns))

    @property
    def max_batch_size(self) -> int:
        return max(self.exec_ns)

    def pages_for(self, kind: DeviceKind) -> int:
        """Pages this model needs on ``kind``; packing is only known for the measured page size."""
        if kind.page_size_bytes == self.page_size_bytes:
            return self.weights_pages
        return max(1, math.ceil(self.weights_bytes / kind.page_size_bytes))

    def ideal_throughput_rps(self) -> float:
        """Requests per second one device sustains at the best batch size, with no cold starts."""
        return max(b * 1e9 / t for b, t in self.exec_ns.items())

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "model": self.model,
            "device_kind": self.device_kind,
            "weights_bytes": self.weights_bytes,
            "page_size_bytes": self.page_size_bytes,
            "weights_pages": self.weights_pages,
            "load_ns": self.load_ns,
            "exec_ns": {str(b): t for b, t in sorted(self.exec_ns.items())},
            "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes,
            "measured": {
                "by": self.measured.by,
                "where": self.measured.where,
                "how": self.measured.how,
            },
            **({"extra": dict(self.extra)} if self.extra else {}),
        }

    @staticmethod
    def from_json(data: Mapping[str, Any], source: str = "<profile>") -> ModelProfile:
        try:
            if data.get("format") != PROFILE_FORMAT:
                raise InvalidInputError(
                    f"{source}: format is {data.get('format')!r}, expected {PROFILE_FORMAT!r}"
                )
            m = data["measured"]
            return ModelProfile(
                model=str(data["model"]),
                device_kind=str(data["device_kind"]),
                weights_bytes=int(data["weights_bytes"]),
                page_size_bytes=int(data["page_size_bytes"]),
                weights_pages=int(data["weights_pages"]),
                load_ns=int(data["load_ns"]),
                exec_ns={int(b): int(t) for b, t in dict(data["exec_ns"]).items()},
                input_bytes=int(data["input_bytes"]),
                output_bytes=int(data["output_bytes"]),
                measured=Measurement(by=str(m["by"]), where=str(m["where"]), how=str(m["how"])),
                extra=dict(data.get("extra", {})),
            )
        except InvalidInputError as e:
            if source in str(e):
                raise
            raise InvalidInputError(f"{source}: {e}") from e
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise InvalidInputError(f"{source}: malformed profile ({type(e).__name__}: {e})") from e


def load_profile(path: Path) -> ModelProfile:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InvalidInputError(f"{path}: cannot read profile: {e}") from e
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: a profile is a JSON object")
    return ModelProfile.from_json(data, source=str(path))


def save_profile(profile: ModelProfile, path: Path) -> None:
    path.write_text(json.dumps(profile.to_json(), indent=2) + "\n")


def shipped_profile(name: str) -> ModelProfile:
    """A profile shipped with the package (``clockwork/profiles/NAME.json``)."""
    ref = resources.files("clockwork.profiles").joinpath(f"{name}.json")
    if not ref.is_file():
        raise InvalidInputError(f"no shipped profile named {name!r}")
    return ModelProfile.from_json(json.loads(ref.read_text()), source=f"shipped:{name}")
