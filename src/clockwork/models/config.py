"""A model's ``config.json``: the served model's name, versions, architecture, tensors, batching.

Example (``REPO/resnet50-0000/config.json``)::

    {
      "name": "resnet50-0000",
      "versions": [1],
      "architecture": "resnet50",
      "arch_params": {"num_classes": 1000, "resolution": 224},
      "inputs": [{"name": "input", "dtype": "FP32", "shape": [3, 224, 224]}],
      "outputs": [{"name": "logits", "dtype": "FP32", "shape": [1000]}],
      "max_batch_size": 16,
      "batch_sizes": [1, 2, 4, 8, 16],
      "default_slo_ms": 100.0,
      "weights_file": "../_shared/resnet50-seed1-0a1b2c3d.safetensors"
    }

``default_slo_ms`` and ``weights_file`` are optional. Without ``weights_file`` the weights of
version V are ``REPO/NAME/V/model.safetensors``; with it, every version's weights are that file,
relative to the model's directory (and inside the repository).

A model of one's own (``clockwork models import``) has a ``format`` instead of an architecture:
``"pt2"`` (a ``torch.export`` program) or ``"onnx"``, and its file is
``REPO/NAME/V/<model_filename>`` (default ``model.pt2`` / ``model.onnx``); its ``inputs`` and
``outputs`` are checked against the file by the repository. The same fields may come from a
Triton ``config.pbtxt`` instead (``clockwork.models.triton_config``).
"""

from __future__ import annotations

import itertools
import math
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from clockwork.core.errors import InvalidInputError
from clockwork.models.architectures import ArchSpec, ParamValue, get_architecture
from clockwork.models.formats import ModelFormat, check_model_filename
from clockwork.models.tensors import TensorSpec

# Model names double as directory names: no separators, and "_" or "." first is reserved (the
# repository keeps shared weights in "_shared"; hidden directories are ignored).
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

_REQUIRED_FIELDS = (
    "name",
    "versions",
    "architecture",
    "arch_params",
    "inputs",
    "outputs",
    "max_batch_size",
    "batch_sizes",
)
_OPTIONAL_FIELDS = ("default_slo_ms", "weights_file", "format", "model_filename")
# a model file's config has no architecture
_FILE_FIELDS = tuple(f for f in _REQUIRED_FIELDS if f not in ("architecture", "arch_params"))


def check_model_name(name: object) -> str:
    if not isinstance(name, str) or not MODEL_NAME_PATTERN.fullmatch(name):
        raise InvalidInputError(
            f"model name {name!r} is not valid: use 1-128 letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return name


def check_batch_sizes(batch_sizes: Sequence[int], max_batch_size: int) -> None:
    """Strictly increasing positive sizes, from 1 up to and including ``max_batch_size``."""
    if not batch_sizes or not all(_is_int(b) and b >= 1 for b in batch_sizes):
        raise InvalidInputError(
            f"batch_sizes must be a non-empty list of positive integers, got {list(batch_sizes)}"
        )
    if not _is_int(max_batch_size) or max_batch_size < 1:
        raise InvalidInputError(f"max_batch_size must be an integer >= 1, got {max_batch_size!r}")
    if any(a >= b for a, b in itertools.pairwise(batch_sizes)):
        raise InvalidInputError(
            f"batch_sizes must be sorted and without repeats, got {list(batch_sizes)}"
        )
    if batch_sizes[0] != 1:
        raise InvalidInputError(f"batch_sizes must include 1, got {list(batch_sizes)}")
    if batch_sizes[-1] != max_batch_size:
        raise InvalidInputError(
            f"batch_sizes must end at max_batch_size {max_batch_size} (none larger), "
            f"got {list(batch_sizes)}"
        )


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """One model as its ``config.json`` describes it, validated against its architecture.

    ``arch_params`` holds every parameter of the architecture (defaults filled in), read-only.
    """

    name: str
    versions: tuple[int, ...]
    architecture: str
    arch_params: Mapping[str, ParamValue] = field(hash=False)
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    batch_sizes: tuple[int, ...]
    default_slo_ms: float | None = None
    weights_file: str | None = None
    # a model of one's own: its format and file name in each version directory (None: the
    # format's default); ``architecture`` is then "" and ``arch_params`` empty
    format: ModelFormat = ModelFormat.BUILTIN
    model_filename: str | None = None
    # what the config's reader noted but ignored (unknown config.pbtxt fields)
    notes: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        check_model_name(self.name)
        if not self.versions or not all(_is_int(v) and v >= 1 for v in self.versions):
            raise InvalidInputError(
                f"versions must be a non-empty list of positive integers, got {list(self.versions)}"
            )
        if len(set(self.versions)) != len(self.versions):
            raise InvalidInputError(f"versions repeat: {list(self.versions)}")
        if not isinstance(self.format, ModelFormat):
            raise InvalidInputError(f"format must be a ModelFormat, got {self.format!r}")
        if self.format is ModelFormat.BUILTIN:
            if self.model_filename is not None:
                raise InvalidInputError("model_filename is for a model file (format pt2 or onnx)")
            spec = get_architecture(self.architecture)
            resolved = spec.resolve_params(self.arch_params)
            object.__setattr__(self, "arch_params", types.MappingProxyType(resolved))
            io = spec.io(resolved)
            _check_tensors("inputs", self.inputs, io.inputs, spec)
            _check_tensors("outputs", self.outputs, io.outputs, spec)
        else:
            if self.architecture or self.arch_params:
                raise InvalidInputError(
                    f"a {self.format.value} model has no architecture nor arch_params"
                )
            if self.weights_file is not None:
                raise InvalidInputError(
                    f"a {self.format.value} model's weights are in its file: no weights_file"
                )
            object.__setattr__(self, "arch_params", types.MappingProxyType({}))
            object.__setattr__(
                self,
                "model_filename",
                check_model_filename(self.format, self.model_filename),
            )
            for which, specs in (("inputs", self.inputs), ("outputs", self.outputs)):
                if not specs:
                    raise InvalidInputError(f"{which} must not be empty")
                names = [t.name for t in specs]
                if len(set(names)) != len(names):
                    raise InvalidInputError(f"{which} repeat a name: {names}")
        check_batch_sizes(self.batch_sizes, self.max_batch_size)
        if self.default_slo_ms is not None and not (
            isinstance(self.default_slo_ms, int | float)
            and not isinstance(self.default_slo_ms, bool)
            and math.isfinite(self.default_slo_ms)
            and self.default_slo_ms > 0
        ):
            raise InvalidInputError(
                f"default_slo_ms must be a finite number > 0, got {self.default_slo_ms!r}"
            )
        if self.weights_file is not None:
            _check_weights_file(self.weights_file)

    @staticmethod
    def from_architecture(
        name: str,
        architecture: str,
        arch_params: Mapping[str, object] | None = None,
        *,
        batch_sizes: Sequence[int] = (1,),
        versions: Sequence[int] = (1,),
        default_slo_ms: float | None = None,
        weights_file: str | None = None,
    ) -> ModelConfig:
        """A config whose inputs and outputs are the architecture's for these parameters."""
        spec = get_architecture(architecture)
        resolved = spec.resolve_params(arch_params)
        io = spec.io(resolved)
        sizes = tuple(batch_sizes)
        return ModelConfig(
            name=name,
            versions=tuple(versions),
            architecture=architecture,
            arch_params=resolved,
            inputs=io.inputs,
            outputs=io.outputs,
            max_batch_size=max(sizes) if sizes else 0,
            batch_sizes=sizes,
            default_slo_ms=default_slo_ms,
            weights_file=weights_file,
        )

    @property
    def arch_spec(self) -> ArchSpec:
        return get_architecture(self.architecture)

    @property
    def kind_text(self) -> str:
        """What the model is, for listings: its architecture or its format."""
        return self.architecture if self.format is ModelFormat.BUILTIN else self.format.value

    @property
    def platform_name(self) -> str:
        """The platform the front door names (Triton's names where Triton has one)."""
        return {
            ModelFormat.BUILTIN: "pytorch",
            ModelFormat.TORCH_EXPORT: "torch_export",
            ModelFormat.ONNX: "onnxruntime_onnx",
        }[self.format]

    @property
    def input_ranges(self) -> dict[str, tuple[int, int]]:
        """Integer input -> the least and greatest value the model takes (both allowed): a
        model file's ``value_range``s; the built-in transformer's token ids, below its
        vocabulary size. Inputs not listed are bounded by their dtype only."""
        if self.format is ModelFormat.BUILTIN:
            vocab = (
                self.arch_params.get("vocab_size") if self.architecture == "transformer" else None
            )
            if isinstance(vocab, int):
                return {t.name: (0, vocab - 1) for t in self.inputs}
            return {}
        return {t.name: t.value_range for t in self.inputs if t.value_range is not None}

    @property
    def measure_key(self) -> tuple[object, ...]:
        """Models with equal keys cost the same to run (a profile measured on one serves
        all): a built-in architecture with equal parameters and batch sizes; a model file is
        only itself."""
        if self.format is ModelFormat.BUILTIN:
            return (self.architecture, tuple(sorted(self.arch_params.items())), self.batch_sizes)
        return (self.format.value, self.name, self.batch_sizes)

    @property
    def input_bytes(self) -> int:
        """Bytes of all inputs of one sample."""
        return sum(t.nbytes for t in self.inputs)

    @property
    def output_bytes(self) -> int:
        """Bytes of all outputs of one sample."""
        return sum(t.nbytes for t in self.outputs)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "versions": list(self.versions)}
        if self.format is ModelFormat.BUILTIN:
            data["architecture"] = self.architecture
            data["arch_params"] = dict(self.arch_params)
        else:
            data["format"] = self.format.value
            data["model_filename"] = self.model_filename
        data |= {
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
            "max_batch_size": self.max_batch_size,
            "batch_sizes": list(self.batch_sizes),
        }
        if self.default_slo_ms is not None:
            data["default_slo_ms"] = self.default_slo_ms
        if self.weights_file is not None:
            data["weights_file"] = self.weights_file
        return data

    @staticmethod
    def from_json(data: object) -> ModelConfig:
        """Parse a decoded ``config.json``; InvalidInputError names the field and problem."""
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"config must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_REQUIRED_FIELDS) - set(_OPTIONAL_FIELDS))
        if unknown:
            raise InvalidInputError(f"unknown fields {unknown}")
        fmt = ModelFormat.parse(data.get("format", ModelFormat.BUILTIN.value))
        required = _REQUIRED_FIELDS if fmt is ModelFormat.BUILTIN else _FILE_FIELDS
        missing = [k for k in required if k not in data]
        if missing:
            raise InvalidInputError(f"missing fields {missing}")
        model_filename = data.get("model_filename")
        if model_filename is not None and not isinstance(model_filename, str):
            raise InvalidInputError(f"model_filename must be a string, got {model_filename!r}")
        arch_params = data.get("arch_params", {})
        if not isinstance(arch_params, Mapping):
            raise InvalidInputError(f"arch_params must be an object, got {arch_params!r}")
        weights_file = data.get("weights_file")
        if weights_file is not None and not isinstance(weights_file, str):
            raise InvalidInputError(f"weights_file must be a string, got {weights_file!r}")
        return ModelConfig(
            name=data["name"],
            versions=tuple(_int_list("versions", data["versions"])),
            architecture=_string("architecture", data.get("architecture", "")),
            arch_params=dict(arch_params),
            inputs=tuple(_tensor_list("inputs", data["inputs"])),
            outputs=tuple(_tensor_list("outputs", data["outputs"])),
            max_batch_size=data["max_batch_size"],
            batch_sizes=tuple(_int_list("batch_sizes", data["batch_sizes"])),
            default_slo_ms=data.get("default_slo_ms"),
            weights_file=weights_file,
            format=fmt,
            model_filename=model_filename,
        )


def _check_tensors(
    which: str, given: tuple[TensorSpec, ...], expected: tuple[TensorSpec, ...], spec: ArchSpec
) -> None:
    if tuple(given) != expected:
        raise InvalidInputError(
            f"{which} {_show(given)} do not match architecture {spec.name!r} with these "
            f"arch_params, which has {_show(expected)}"
        )


def _check_weights_file(weights_file: str) -> None:
    path = PurePosixPath(weights_file)
    if not weights_file or path.is_absolute() or "\\" in weights_file:
        raise InvalidInputError(
            f"weights_file must be a relative path (with '/'), got {weights_file!r}"
        )
    if path.suffix != ".safetensors":
        raise InvalidInputError(f"weights_file must name a .safetensors file, got {weights_file!r}")


def _show(tensors: Sequence[TensorSpec]) -> str:
    return "[" + ", ".join(f"{t.name} {t.dtype} {list(t.shape)}" for t in tensors) + "]"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{key} must be a string, got {value!r}")
    return value


def _int_list(key: str, value: object) -> list[int]:
    if not isinstance(value, list) or not all(_is_int(v) for v in value):
        raise InvalidInputError(f"{key} must be a list of integers, got {value!r}")
    return list(value)


def _tensor_list(key: str, value: object) -> list[TensorSpec]:
    if not isinstance(value, list) or not value:
        raise InvalidInputError(f"{key} must be a non-empty list of tensors, got {value!r}")
    specs: list[TensorSpec] = []
    for item in value:
        try:
            specs.append(TensorSpec.from_json(item))
        except InvalidInputError as e:
            raise InvalidInputError(f"{key}: {e}") from e
    return specs
