"""What an architecture is: a builder, its parameters with defaults, its input/output specs."""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from clockwork.core.errors import InvalidInputError
from clockwork.models.tensors import TensorSpec

# Values an architecture parameter may take (they travel through JSON and the command line).
ParamValue = int | float | str | bool
Params = Mapping[str, ParamValue]


@dataclass(frozen=True, slots=True)
class ModelIO:
    """A model's inputs and outputs, each without the batch dimension."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True, slots=True)
class ArchSpec:
    """One built-in architecture.

    Build models with :meth:`build` (seeded weights, eval mode) or :meth:`build_skeleton` (meta
    device, no values). The fields are the parts those use: ``structure`` makes the module from
    *resolved* parameters, with whatever values torch's constructors give; ``init_weights``
    gives every parameter and buffer a value drawn from the generator only; ``check_params``
    rejects combinations the structure cannot honour; ``io`` gives the input/output specs.
    """

    name: str
    description: str
    default_params: Mapping[str, ParamValue]
    structure: Callable[[Params], nn.Module]
    io: Callable[[Params], ModelIO]
    init_weights: Callable[[nn.Module, torch.Generator], None]
    check_params: Callable[[Params], None]

    def __post_init__(self) -> None:
        # A read-only copy: specs are shared, module-level values.
        object.__setattr__(
            self, "default_params", types.MappingProxyType(dict(self.default_params))
        )

    def resolve_params(self, params: Mapping[str, object] | None = None) -> dict[str, ParamValue]:
        """Defaults overlaid with ``params``; unknown names and wrong types are refused.

        An int is accepted where the default is a float (and converted); a bool never stands in
        for a number.
        """
        resolved: dict[str, ParamValue] = dict(self.default_params)
        for key, value in (params or {}).items():
            if key not in self.default_params:
                raise InvalidInputError(
                    f"architecture {self.name!r} has no parameter {key!r}; "
                    f"its parameters are {', '.join(sorted(self.default_params))}"
                )
            resolved[key] = _coerce(self.name, key, value, self.default_params[key])
        self.check_params(resolved)
        return resolved

    def model_io(self, params: Mapping[str, object] | None = None) -> ModelIO:
        return self.io(self.resolve_params(params))

    def build(self, params: Mapping[str, object] | None = None, seed: int = 0) -> nn.Module:
        """The module in eval mode with weights drawn from ``torch.Generator().manual_seed(seed)``.

        The same (architecture, parameters, seed) gives bit-identical weights: the structure is
        built on the meta device (no global RNG is used), then every tensor is initialised in
        module order from the seeded generator.
        """
        module = self.build_skeleton(params)
        module.to_empty(device="cpu")
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.init_weights(module, generator)
        return module.eval()

    def build_skeleton(self, params: Mapping[str, object] | None = None) -> nn.Module:
        """The module's structure on the meta device (no memory, no values), in eval mode.

        Its ``state_dict()`` names every tensor with its shape and dtype; load real tensors with
        ``load_state_dict(..., assign=True)``.
        """
        resolved = self.resolve_params(params)
        with torch.device("meta"):
            module = self.structure(types.MappingProxyType(resolved))
        return module.eval()


def _coerce(arch: str, key: str, value: object, default: ParamValue) -> ParamValue:
    where = f"architecture {arch!r} parameter {key!r}"
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif isinstance(value, str):
        return value
    raise InvalidInputError(
        f"{where} must be of type {type(default).__name__}, got {value!r} ({type(value).__name__})"
    )


def param_int(params: Params, key: str) -> int:
    value = params[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInputError(f"parameter {key!r} must be an integer, got {value!r}")
    return value


def param_float(params: Params, key: str) -> float:
    value = params[key]
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidInputError(f"parameter {key!r} must be a number, got {value!r}")
    return float(value)


def require(condition: bool, arch: str, problem: str) -> None:
    """Refuse a parameter combination: ``InvalidInputError('architecture X: problem')``."""
    if not condition:
        raise InvalidInputError(f"architecture {arch!r}: {problem}")
