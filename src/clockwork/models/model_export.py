"""``clockwork models export``: a built-in model as a ``.pt2`` program and an ``.onnx`` file.

Both are exported from the model's module with its repository weights, the batch dimension
dynamic (up to the model's ``max_batch_size``) and the model's input and output names, so that
the files imported back (``into``) serve the same requests as the built-in form: the same network
in three forms, for comparing them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from clockwork.core.errors import InvalidInputError
from clockwork.models.formats import ModelFormat
from clockwork.models.model_import import import_model
from clockwork.models.repository import ModelRepository
from clockwork.models.tensors import TensorSpec


def export_model(
    repo: ModelRepository,
    name: str,
    out_dir: Path,
    formats: tuple[ModelFormat, ...] = (ModelFormat.TORCH_EXPORT, ModelFormat.ONNX),
    *,
    into: Path | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``out_dir/<name>.pt2`` and/or ``.onnx``; with ``into``, also import each into that
    repository as ``<name>-pt2`` / ``<name>-onnx``. Returns the files written."""
    config = repo.load_config(name)
    if config.format is not ModelFormat.BUILTIN:
        raise InvalidInputError(f"model {name!r} is already a {config.format.value} file")
    version = max(config.versions)
    module = repo.build_module(name, version, copy=True)
    example = _example(config.inputs, min(2, config.max_batch_size))
    in_names = [t.name for t in config.inputs]
    out_names = [t.name for t in config.outputs]
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for fmt in formats:
        path = out_dir / f"{name}{fmt.suffix}"
        if path.exists() and not overwrite:
            raise InvalidInputError(f"{path}: exists; overwrite (--overwrite) replaces")
        with warnings.catch_warnings():
            # the exporters warn about tracing details and their own deprecations
            warnings.simplefilter("ignore")
            if fmt is ModelFormat.TORCH_EXPORT:
                dynamic = None
                if config.max_batch_size > 1:
                    batch = torch.export.Dim("batch", min=1, max=config.max_batch_size)
                    dynamic = tuple({0: batch} for _ in example)
                program = torch.export.export(module, example, dynamic_shapes=dynamic)
                torch.export.save(program, str(path))
            elif fmt is ModelFormat.ONNX:
                axes = {n: {0: "batch"} for n in [*in_names, *out_names]}
                torch.onnx.export(
                    module,
                    example,
                    str(path),
                    dynamo=False,
                    input_names=in_names,
                    output_names=out_names,
                    dynamic_axes=axes,
                )
            else:
                raise InvalidInputError(f"cannot export to {fmt.value}")
        written.append(path)
        if into is not None:
            import_model(
                into,
                path,
                f"{name}-{fmt.value}",
                max_batch_size=config.max_batch_size,
                overwrite=overwrite,
                names=(in_names, out_names),
            )
    return written


def _example(inputs: Sequence[TensorSpec], batch: int) -> tuple[torch.Tensor, ...]:
    tensors: list[torch.Tensor] = []
    for spec in inputs:
        if spec.torch_dtype.is_floating_point:
            tensors.append(torch.randn((batch, *spec.shape), dtype=spec.torch_dtype))
        else:
            tensors.append(torch.zeros((batch, *spec.shape), dtype=spec.torch_dtype))
    return tuple(tensors)
