"""Tensor descriptions as the Open Inference Protocol (Triton) names them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from clockwork.core.errors import InvalidInputError

# Triton / Open Inference Protocol dtype names and their torch dtypes. BYTES (variable-length
# strings) has no torch dtype; no built-in architecture uses it.
TRITON_DTYPES: dict[str, torch.dtype | None] = {
    "BOOL": torch.bool,
    "UINT8": torch.uint8,
    "UINT16": torch.uint16,
    "UINT32": torch.uint32,
    "UINT64": torch.uint64,
    "INT8": torch.int8,
    "INT16": torch.int16,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "FP16": torch.float16,
    "FP32": torch.float32,
    "FP64": torch.float64,
    "BF16": torch.bfloat16,
    "BYTES": None,
}

# The same dtypes as safetensors writes them in a file's header.
SAFETENSORS_DTYPES: dict[torch.dtype, str] = {
    torch.bool: "BOOL",
    torch.uint8: "U8",
    torch.uint16: "U16",
    torch.uint32: "U32",
    torch.uint64: "U64",
    torch.int8: "I8",
    torch.int16: "I16",
    torch.int32: "I32",
    torch.int64: "I64",
    torch.float16: "F16",
    torch.float32: "F32",
    torch.float64: "F64",
    torch.bfloat16: "BF16",
}


def triton_dtype_name(dtype: torch.dtype) -> str:
    """The Triton name of a torch dtype (``torch.float32`` -> ``"FP32"``)."""
    for name, candidate in TRITON_DTYPES.items():
        if candidate == dtype:
            return name
    raise InvalidInputError(f"torch dtype {dtype} has no Triton name")


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output of a model: name, Triton dtype name, shape without the batch dim.

    ``value_range``: for an integer input, the least and the greatest value the model can take
    (both allowed), such as ``(0, vocabulary size - 1)`` for token ids that index an embedding;
    None where it is not known (then only the dtype bounds the values)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    value_range: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.shape, list):
            object.__setattr__(self, "shape", tuple(self.shape))
        if not isinstance(self.name, str) or not self.name:
            raise InvalidInputError(f"tensor name must be a non-empty string, got {self.name!r}")
        if self.dtype not in TRITON_DTYPES:
            hint = ""
            if isinstance(self.dtype, str) and self.dtype.removeprefix("TYPE_") in TRITON_DTYPES:
                hint = f" (write {self.dtype.removeprefix('TYPE_')!r}, without 'TYPE_')"
            raise InvalidInputError(
                f"tensor {self.name!r}: unknown dtype {self.dtype!r}{hint}; "
                f"expected one of {', '.join(TRITON_DTYPES)}"
            )
        if not isinstance(self.shape, tuple) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in self.shape
        ):
            raise InvalidInputError(
                f"tensor {self.name!r}: shape must be a list of positive integers "
                f"(fixed sizes, without the batch dimension), got {self.shape!r}"
            )
        if self.value_range is not None:
            self._check_range(self.value_range)

    def _check_range(self, value_range: object) -> None:
        bounds = dtype_bounds(self.dtype)
        if bounds is None:
            raise InvalidInputError(
                f"tensor {self.name!r}: a value range is for integer tensors, not {self.dtype}"
            )
        if (
            not isinstance(value_range, tuple | list)
            or len(value_range) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value_range)
        ):
            raise InvalidInputError(
                f"tensor {self.name!r}: value range must be [least, greatest], got {value_range!r}"
            )
        low, high = value_range
        if not bounds[0] <= low <= high <= bounds[1]:
            raise InvalidInputError(
                f"tensor {self.name!r}: value range [{low}, {high}] must have least <= greatest, "
                f"both within {self.dtype}'s [{bounds[0]}, {bounds[1]}]"
            )
        object.__setattr__(self, "value_range", (low, high))

    @property
    def torch_dtype(self) -> torch.dtype:
        dtype = TRITON_DTYPES[self.dtype]
        if dtype is None:
            raise InvalidInputError(f"tensor {self.name!r}: dtype {self.dtype} has no torch dtype")
        return dtype

    @property
    def numel(self) -> int:
        """Elements of one sample (without the batch dimension)."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of one sample (without the batch dimension)."""
        return self.numel * self.torch_dtype.itemsize

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        if self.value_range is not None:
            data["range"] = list(self.value_range)
        return data

    @staticmethod
    def from_json(data: object) -> TensorSpec:
        """Parse ``{"name", "dtype", "shape"}`` and an optional ``"range": [least, greatest]``;
        raises InvalidInputError naming the problem."""
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"a tensor is an object with name, dtype, shape; got {data!r}")
        extra = set(data) - {"name", "dtype", "shape", "range"}
        if extra:
            raise InvalidInputError(f"tensor {data.get('name')!r}: unknown fields {sorted(extra)}")
        missing = {"name", "dtype", "shape"} - set(data)
        if missing:
            raise InvalidInputError(
                f"tensor {data.get('name')!r}: missing fields {sorted(missing)}"
            )
        shape = data["shape"]
        if not isinstance(shape, list):
            raise InvalidInputError(
                f"tensor {data['name']!r}: shape must be a list of integers, got {shape!r}"
            )
        value_range = data.get("range")
        if value_range is not None and not isinstance(value_range, list):
            raise InvalidInputError(
                f"tensor {data['name']!r}: range must be [least, greatest], got {value_range!r}"
            )
        return TensorSpec(
            name=data["name"],
            dtype=data["dtype"],
            shape=tuple(shape),
            value_range=tuple(value_range) if value_range is not None else None,
        )


def dtype_bounds(dtype: str) -> tuple[int, int] | None:
    """The least and greatest value of an integer Triton dtype (None: not an integer dtype)."""
    torch_dtype = TRITON_DTYPES.get(dtype)
    if torch_dtype is None or torch_dtype.is_floating_point or torch_dtype == torch.bool:
        return None
    info = torch.iinfo(torch_dtype)
    return int(info.min), int(info.max)
