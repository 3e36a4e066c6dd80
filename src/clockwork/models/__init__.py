"""Models: built-in architectures, the on-disk model repository, and weight page packing."""

from __future__ import annotations

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
