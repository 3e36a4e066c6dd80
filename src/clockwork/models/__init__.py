"""Models: built-in architectures, the on-disk model repository, and weight page packing."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clockwork.models.architectures import (
        ARCHITECTURES,
        ArchSpec,
        ModelIO,
        build_model,
        get_architecture,
    )
    from clockwork.models.config import ModelConfig
    from clockwork.models.create import DEFAULT_BATCH_SIZES, create_repository
    from clockwork.models.errors import ModelRepositoryError, UnknownModelError
    from clockwork.models.packing import PagePlan, TensorPlacement, pack_into_pages, pack_tensors
    from clockwork.models.repository import ModelRepository
    from clockwork.models.tensors import TRITON_DTYPES, TensorSpec

# where each name lives: imported on first use, so that importing one submodule (a
# configuration check, the errors) does not import torch with the architectures
_LAZY = {
    "ARCHITECTURES": "clockwork.models.architectures",
    "ArchSpec": "clockwork.models.architectures",
    "ModelIO": "clockwork.models.architectures",
    "build_model": "clockwork.models.architectures",
    "get_architecture": "clockwork.models.architectures",
    "ModelConfig": "clockwork.models.config",
    "DEFAULT_BATCH_SIZES": "clockwork.models.create",
    "create_repository": "clockwork.models.create",
    "ModelRepositoryError": "clockwork.models.errors",
    "UnknownModelError": "clockwork.models.errors",
    "PagePlan": "clockwork.models.packing",
    "TensorPlacement": "clockwork.models.packing",
    "pack_into_pages": "clockwork.models.packing",
    "pack_tensors": "clockwork.models.packing",
    "ModelRepository": "clockwork.models.repository",
    "TRITON_DTYPES": "clockwork.models.tensors",
    "TensorSpec": "clockwork.models.tensors",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ARCHITECTURES",
    "DEFAULT_BATCH_SIZES",
    "TRITON_DTYPES",
    "ArchSpec",
    "ModelConfig",
    "ModelIO",
    "ModelRepository",
    "ModelRepositoryError",
    "PagePlan",
    "TensorPlacement",
    "TensorSpec",
    "UnknownModelError",
    "build_model",
    "create_repository",
    "get_architecture",
    "pack_into_pages",
    "pack_tensors",
]
