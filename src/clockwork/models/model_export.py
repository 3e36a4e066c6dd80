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
    example = example_inputs(config.inputs, min(2, config.max_batch_size))
    in_names = [t.name for t in config.inputs]
    out_names = [t.name for t in config.outputs]
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for fmt in formats:
        path = out_dir / f"{name}{fmt.suffix}"
        if path.exists() and not overwrite:
            raise InvalidInputError(f"{path}: exists; overwrite (--overwrite) replaces")
        if fmt is ModelFormat.TORCH_EXPORT:
            export_pt2(module, example, config.max_batch_size, path)
        elif fmt is ModelFormat.ONNX:
            export_onnx(module, example, in_names, out_names, path)
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


def export_pt2(
    module: torch.nn.Module, example: tuple[torch.Tensor, ...], max_batch_size: int, path: Path
) -> None:
    """``torch.export`` ``module`` (batch dimension dynamic up to ``max_batch_size``) to
    ``path``."""
    dynamic = None
    if max_batch_size > 1:
        batch = torch.export.Dim("batch", min=1, max=max_batch_size)
        dynamic = tuple({0: batch} for _ in example)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter warns about tracing details
        program = torch.export.export(module, example, dynamic_shapes=dynamic)
        torch.export.save(program, str(path))


def export_onnx(
    module: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    in_names: Sequence[str],
    out_names: Sequence[str],
    path: Path,
) -> None:
    """``module`` to an ONNX file at ``path``, the batch dimension dynamic.

    With the TorchScript-based exporter (``dynamo=False``): it traces the module once (a few
    seconds for MobileNetV2), needs nothing beyond torch and onnx, and its files run on ONNX
    Runtime as they are; the dynamo exporter needs ``onnxscript`` besides and goes through
    ``torch.export`` first (itself several seconds more here).
    """
    axes = {n: {0: "batch"} for n in [*in_names, *out_names]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter warns about its own deprecation
        torch.onnx.export(
            module,
            example,
            str(path),
            dynamo=False,
            input_names=list(in_names),
            output_names=list(out_names),
            dynamic_axes=axes,
        )


def example_inputs(inputs: Sequence[TensorSpec], batch: int) -> tuple[torch.Tensor, ...]:
    """Inputs to trace with: random floats, zeros for integer tensors."""
    tensors: list[torch.Tensor] = []
    for spec in inputs:
        if spec.torch_dtype.is_floating_point:
            tensors.append(torch.randn((batch, *spec.shape), dtype=spec.torch_dtype))
        else:
            tensors.append(torch.zeros((batch, *spec.shape), dtype=spec.torch_dtype))
    return tuple(tensors)
