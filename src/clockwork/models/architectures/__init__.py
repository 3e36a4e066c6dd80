"""Built-in architectures, by name: plain PyTorch, no downloads."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from clockwork.core.errors import InvalidInputError
from clockwork.models.architectures.mobilenet import MOBILENET_V2
from clockwork.models.architectures.resnet import RESNET18, RESNET50
from clockwork.models.architectures.spec import ArchSpec, ModelIO, Params, ParamValue
from clockwork.models.architectures.transformer import TRANSFORMER

ARCHITECTURES: dict[str, ArchSpec] = {
    spec.name: spec for spec in (RESNET18, RESNET50, MOBILENET_V2, TRANSFORMER)
}


def get_architecture(name: str) -> ArchSpec:
    """The architecture called ``name``; InvalidInputError listing the known ones otherwise."""
    try:
        return ARCHITECTURES[name]
    except (KeyError, TypeError):
        raise InvalidInputError(
            f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        ) from None


def build_model(arch: str, params: Mapping[str, object] | None = None, seed: int = 0) -> nn.Module:
    """``get_architecture(arch).build(params, seed)``: seeded weights, eval mode."""
    return get_architecture(arch).build(params, seed)


__all__ = [
    "ARCHITECTURES",
    "ArchSpec",
    "ModelIO",
    "ParamValue",
    "Params",
    "build_model",
    "get_architecture",
]
