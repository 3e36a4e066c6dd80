"""Seeded weight initialisation: every tensor drawn from one generator, in module order.

Nothing here touches torch's global RNG, so the same module structure and seed always give
bit-identical weights. A module whose own parameters or buffers no rule covers is an error, not a
silently uninitialised tensor (modules are built on the meta device, then materialised empty).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

# How a Linear layer's weight is drawn, given the layer and the generator.
LinearInit = Callable[[nn.Linear, torch.Generator], None]


def linear_torch_default(layer: nn.Linear, generator: torch.Generator) -> None:
    """torch's own ``nn.Linear`` rule: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    if layer.bias is not None:
        bound = 1.0 / math.sqrt(layer.in_features) if layer.in_features > 0 else 0.0
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


def linear_normal(std: float) -> LinearInit:
    """Weight ~ N(0, std), bias zero (torchvision's MobileNetV2 head, BERT-style encoders)."""

    def init(layer: nn.Linear, generator: torch.Generator) -> None:
        nn.init.normal_(layer.weight, 0.0, std, generator=generator)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)

    return init


@dataclass(frozen=True, slots=True)
class InitRules:
    """Per-architecture choices; convolutions always follow torchvision (Kaiming, fan-out)."""

    linear: LinearInit = linear_torch_default
    embedding_std: float = 0.02


def init_module(module: nn.Module, generator: torch.Generator, rules: InitRules) -> None:
    """Give every parameter and buffer of ``module`` a value; raise if one is not covered."""
    covered: set[int] = set()
    with torch.no_grad():
        for sub in module.modules():
            if not _init_one(sub, generator, rules):
                continue
            covered.update(id(t) for t in sub.parameters(recurse=False))
            covered.update(id(t) for t in sub.buffers(recurse=False))
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if id(tensor) not in covered:
                raise TypeError(f"no initialisation rule covers {name!r} ({type(module).__name__})")


def _init_one(sub: nn.Module, generator: torch.Generator, rules: InitRules) -> bool:
    """Initialise ``sub``'s own tensors; False if it has none or no rule for its type."""
    if isinstance(sub, nn.Conv2d):
        nn.init.kaiming_normal_(
            sub.weight, mode="fan_out", nonlinearity="relu", generator=generator
        )
        if sub.bias is not None:
            nn.init.zeros_(sub.bias)
        return True
    if isinstance(sub, nn.BatchNorm2d):
        if sub.weight is not None:
            nn.init.ones_(sub.weight)
        if sub.bias is not None:
            nn.init.zeros_(sub.bias)
        if sub.running_mean is not None:
            sub.running_mean.zero_()
        if sub.running_var is not None:
            sub.running_var.fill_(1.0)
        if sub.num_batches_tracked is not None:
            sub.num_batches_tracked.zero_()
        return True
    if isinstance(sub, nn.LayerNorm):
        if sub.weight is not None:
            nn.init.ones_(sub.weight)
        if sub.bias is not None:
            nn.init.zeros_(sub.bias)
        return True
    if isinstance(sub, nn.Linear):
        rules.linear(sub, generator)
        return True
    if isinstance(sub, nn.Embedding):
        nn.init.normal_(sub.weight, 0.0, rules.embedding_std, generator=generator)
        return True
    return False
