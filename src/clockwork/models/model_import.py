"""``clockwork models import``: a ``.pt2`` or ``.onnx`` file into a repository entry.

The file is checked first (safe loading, a batch dimension, fixed sizes past it), run once at
batch 1 and at ``max_batch_size`` on zeros (its outputs must have the declared shapes), and only
then written: ``REPO/NAME/<version>/model.pt2`` (or ``.onnx``, with any external data files
beside it) and ``REPO/NAME/config.pbtxt`` in Triton's layout, its inputs and outputs taken from
the file. Files are written atomically, the config last.

An integer input that indexes an embedding table in the file (``aten.embedding`` in a ``.pt2``,
a ``Gather`` on an initializer in ONNX) gets that table's rows as its value range in the config
(``clockwork.value_range.<input>``; ``model_files.pt2_input_ranges``/``onnx_input_ranges``); for
another integer input the config says that the range is not known and how to give one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from clockwork.core.errors import InvalidInputError
from clockwork.models.config import ModelConfig, check_model_name
from clockwork.models.create import write_text_atomic
from clockwork.models.formats import ModelFormat, format_of_file
from clockwork.models.model_files import (
    FileSignature,
    config_tensors,
    file_signature,
    load_pt2,
    onnx_input_ranges,
    pt2_input_ranges,
    pt2_signature,
)
from clockwork.models.tensors import TensorSpec
from clockwork.models.triton_config import PBTXT_FILE, write_triton_config
from clockwork.models.weights import temporary_sibling

DEFAULT_MAX_BATCH_SIZE = 16


def power_of_two_sizes(max_batch_size: int) -> tuple[int, ...]:
    """1, 2, 4, ... up to ``max_batch_size``, and ``max_batch_size`` itself."""
    sizes = {1 << i for i in range(max_batch_size.bit_length()) if 1 << i <= max_batch_size}
    return tuple(sorted({*sizes, max_batch_size}))


def import_model(
    root: Path,
    file: Path,
    name: str,
    *,
    max_batch_size: int | None = None,
    version: int = 1,
    overwrite: bool = False,
    names: tuple[Sequence[str], Sequence[str]] | None = None,
) -> ModelConfig:
    """Write ``file`` into the repository at ``root`` as model ``name``; return its config.

    ``max_batch_size`` defaults to 16, or 1 when the file fixes its batch dimension at 1.
    ``names``: the input and output names a ``.pt2`` program's positional tensors get (default:
    its Python parameters' names, and ``output`` or ``output0``, ``output1``...); an ONNX file's
    names are its own.
    """
    check_model_name(name)
    file = Path(file)
    fmt = format_of_file(file.name)
    if not file.is_file():
        raise InvalidInputError(f"{file}: no such file")
    # a .pt2 is read once (seconds for a MobileNetV2): its signature and both runs use it
    program = load_pt2(file, name) if fmt is ModelFormat.TORCH_EXPORT else None
    sig: FileSignature = (
        pt2_signature(program) if program is not None else file_signature(fmt, file, name)
    )
    if max_batch_size is None:
        fixed = any(t.dims and t.dims[0] == 1 for t in sig.inputs)
        max_batch_size = 1 if fixed else DEFAULT_MAX_BATCH_SIZE
    if max_batch_size < 1:
        raise InvalidInputError(f"max_batch_size must be >= 1, got {max_batch_size}")
    inputs, outputs = config_tensors(sig, max_batch_size)
    # the values an integer input may take, where the file shows them (an embedding's rows)
    ranges = pt2_input_ranges(program) if program is not None else onnx_input_ranges(file)
    inputs = tuple(
        TensorSpec(t.name, t.dtype, t.shape, ranges.get(f.name))
        for t, f in zip(inputs, sig.inputs, strict=True)
    )
    if not sig.named:
        in_names: Sequence[str] = [t.name for t in inputs]
        out_names: Sequence[str] = [
            "output" if len(outputs) == 1 else f"output{i}" for i in range(len(outputs))
        ]
        if names is not None:
            in_names, out_names = names
            if len(in_names) != len(inputs) or len(out_names) != len(outputs):
                raise InvalidInputError(
                    f"{file}: {len(inputs)} input(s) and {len(outputs)} output(s), but "
                    f"names {list(in_names)}, {list(out_names)}"
                )
        inputs = tuple(
            TensorSpec(n, t.dtype, t.shape, t.value_range)
            for n, t in zip(in_names, inputs, strict=True)
        )
        outputs = tuple(
            TensorSpec(n, t.dtype, t.shape) for n, t in zip(out_names, outputs, strict=True)
        )
    config = ModelConfig(
        name=name,
        versions=(version,),
        architecture="",
        arch_params={},
        inputs=inputs,
        outputs=outputs,
        max_batch_size=max_batch_size,
        batch_sizes=power_of_two_sizes(max_batch_size),
        format=fmt,
        model_filename=fmt.default_filename,
    )
    module = program.module() if program is not None else None
    for batch in sorted({1, max_batch_size}):
        try_run(fmt, file, config, batch, module)

    model_dir = Path(root) / name
    if model_dir.exists() and not overwrite:
        raise InvalidInputError(
            f"{model_dir}: model directory already exists; overwrite (--overwrite) replaces"
        )
    extra = _external_data_files(file) if fmt is ModelFormat.ONNX else []
    if model_dir.is_dir() and not model_dir.is_symlink():
        shutil.rmtree(model_dir)
    elif model_dir.exists() or model_dir.is_symlink():
        model_dir.unlink()
    version_dir = model_dir / str(version)
    version_dir.mkdir(parents=True)
    for source, relative in [(file, fmt.default_filename), *extra]:
        _copy_atomic(source, version_dir / relative)
    write_text_atomic(model_dir / PBTXT_FILE, write_triton_config(config))
    return config


def try_run(
    fmt: ModelFormat,
    file: Path,
    config: ModelConfig,
    batch: int,
    module: torch.nn.Module | None = None,
) -> None:
    """Run ``file`` once on zeros at ``batch``; InvalidInputError unless it runs and its
    outputs have the config's shapes. ``module``: a ``.pt2`` file's program's module, if read
    already."""
    feeds = [np.zeros((batch, *s.shape), dtype=_numpy_dtype(s)) for s in config.inputs]
    try:
        if fmt is ModelFormat.TORCH_EXPORT:
            if module is None:
                module = load_pt2(file, config.name).module()
            with torch.inference_mode():
                result = module(*(torch.from_numpy(f) for f in feeds))
            results = list(result) if isinstance(result, tuple | list) else [result]
            arrays = [r.detach().numpy() for r in results]
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3
            session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
            arrays = session.run(
                [s.name for s in config.outputs],
                {s.name: f for s, f in zip(config.inputs, feeds, strict=True)},
            )
    except InvalidInputError:
        raise
    except Exception as e:
        raise InvalidInputError(
            f"{file}: does not run at batch {batch}: {str(e).splitlines()[0][:400]}"
        ) from e
    for spec, array in zip(config.outputs, arrays, strict=True):
        if tuple(np.shape(array)) != (batch, *spec.shape):
            raise InvalidInputError(
                f"{file}: output {spec.name!r} has shape {list(np.shape(array))} at batch "
                f"{batch}, expected {[batch, *spec.shape]}"
            )


def _numpy_dtype(spec: TensorSpec) -> np.dtype[np.generic]:
    return np.dtype(torch.empty((), dtype=spec.torch_dtype).numpy().dtype)


def _external_data_files(file: Path) -> list[tuple[Path, str]]:
    """The external data files an ONNX file names (relative paths inside its directory)."""
    import onnx

    proto = onnx.load(str(file), load_external_data=False)
    found: dict[str, Path] = {}
    base = file.parent.resolve()
    for init in proto.graph.initializer:
        for entry in init.external_data:
            if entry.key != "location":
                continue
            target = (base / entry.value).resolve()
            if os.path.commonpath([target, base]) != str(base) or not target.is_file():
                raise InvalidInputError(
                    f"{file}: external data {entry.value!r} of {init.name!r} is not a file "
                    "beside the model"
                )
            found[entry.value] = target
    return [(path, relative) for relative, path in sorted(found.items())]


def _copy_atomic(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(target)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
