"""What a model takes and returns, as the Open Inference Protocol describes it.

The controller learns a model's signature from the worker that registered it, so the front door can
answer model metadata and check request tensors without reading any repository itself. Plain data:
no torch, so that the controller runs without it.
"""

from __future__ import annotations

from dataclasses import dataclass

from clockwork.core.errors import InvalidInputError

#: Open Inference Protocol datatype names (Triton's, without the ``TYPE_`` prefix)
OIP_DATATYPES = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BF16",
    "BYTES",
)


@dataclass(frozen=True, slots=True)
class TensorSignature:
    """One input or output: name, OIP datatype, shape of one sample (no batch dimension; ``-1``
    marks a dimension of any size), and for an integer input the least and greatest value the
    model takes (``value_range``, both allowed; None: any value of the datatype)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    value_range: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidInputError(f"tensor name must be a non-empty string, got {self.name!r}")
        if self.datatype not in OIP_DATATYPES:
            raise InvalidInputError(
                f"tensor {self.name!r}: unknown datatype {self.datatype!r}; "
                f"expected one of {', '.join(OIP_DATATYPES)}"
            )
        if not all(isinstance(d, int) and (d >= 0 or d == -1) for d in self.shape):
            raise InvalidInputError(
                f"tensor {self.name!r}: shape {list(self.shape)} must hold integers >= 0 or -1"
            )
        if self.value_range is not None and not (
            len(self.value_range) == 2
            and all(isinstance(v, int) for v in self.value_range)
            and self.value_range[0] <= self.value_range[1]
        ):
            raise InvalidInputError(
                f"tensor {self.name!r}: value range {self.value_range!r} must be "
                "(least, greatest) integers"
            )


@dataclass(frozen=True, slots=True)
class ModelSignature:
    """A model's tensors, the largest batch one request may carry (``max_batch_size``; requests
    then carry a leading batch dimension, as in Triton), its versions and its platform name."""

    inputs: tuple[TensorSignature, ...]
    outputs: tuple[TensorSignature, ...]
    max_batch_size: int
    versions: tuple[int, ...] = (1,)
    platform: str = "pytorch"

    def __post_init__(self) -> None:
        if not self.inputs or not self.outputs:
            raise InvalidInputError("a model signature needs at least one input and one output")
        for group in (self.inputs, self.outputs):
            names = [t.name for t in group]
            if len(set(names)) != len(names):
                raise InvalidInputError(f"tensor names repeat: {names}")
        if not isinstance(self.max_batch_size, int) or self.max_batch_size < 1:
            raise InvalidInputError(f"max_batch_size must be >= 1, got {self.max_batch_size!r}")
        if not self.versions or not all(isinstance(v, int) and v >= 1 for v in self.versions):
            raise InvalidInputError(f"versions must be integers >= 1, got {list(self.versions)}")

    def input(self, name: str) -> TensorSignature | None:
        for t in self.inputs:
            if t.name == name:
                return t
        return None
