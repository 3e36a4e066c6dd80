"""Model files of one's own (``.pt2``, ``.onnx``): read safely, and what they take and return.

Safe loaders only. A ``.pt2`` archive is opened by ``torch.export.load`` only after its every
part has been checked to load without Python's full unpickler: the program and the payload
configs are JSON, weights and constants raw bytes, sample inputs are read with torch's
weights-only unpickler; an archive with pickled weights or constants, custom or opaque objects,
the legacy weights layout, or an AOTInductor build is refused (``torch.export.load`` would
unpickle those with ``weights_only=False``). A TorchScript or ``torch.save`` file is refused with
how to export instead. ONNX files are protobuf: nothing in them runs code.

A file's *signature* is its inputs and outputs as :class:`FileTensor` (dimension ``None`` where
the file leaves it symbolic) in its own order; :func:`check_signature` compares it with a
config's ``inputs``/``outputs`` and ``max_batch_size`` (the first dimension is the batch).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from clockwork.core.errors import InvalidInputError
from clockwork.models.errors import ModelRepositoryError
from clockwork.models.formats import EXPORT_HINT, ModelFormat
from clockwork.models.tensors import TensorSpec, triton_dtype_name

if TYPE_CHECKING:
    from torch.export import ExportedProgram

    from clockwork.models.repository import ModelRepository

# ONNX TensorProto.DataType -> Triton names (the ones a Triton server maps too)
ONNX_DTYPES: dict[int, str] = {
    1: "FP32",
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    9: "BOOL",
    10: "FP16",
    11: "FP64",
    12: "UINT32",
    13: "UINT64",
    16: "BF16",
}


@dataclass(frozen=True, slots=True)
class FileTensor:
    """One input or output as a model file declares it, batch dimension included."""

    name: str
    dtype: str
    dims: tuple[int | None, ...]

    def show(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.dims)
        return f"{self.name} {self.dtype} [{dims}]"


@dataclass(frozen=True, slots=True)
class FileSignature:
    inputs: tuple[FileTensor, ...]
    outputs: tuple[FileTensor, ...]
    # whether the names mean anything: ONNX names its inputs and outputs; a torch.export
    # program takes positional arguments (its input names are the Python parameters', its
    # output names its graph's nodes'), so a config's tensors match it by position
    named: bool


# ------------------------------------------------------------------------------- .pt2


def check_pt2_archive(path: Path, model: str | None = None) -> None:
    """Refuse (ModelRepositoryError) a ``.pt2`` that ``torch.export.load`` would not read
    with safe loaders only, or that is not a torch.export archive at all."""
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ModelRepositoryError(path, "model file does not exist", model) from None
    except (OSError, zipfile.BadZipFile) as e:
        raise ModelRepositoryError(
            path, f"not a torch.export archive (not a zip file: {e})", model
        ) from e
    with archive:
        names = archive.namelist()
        roots = {n.split("/", 1)[0] for n in names}
        if len(roots) != 1 or not all("/" in n for n in names):
            raise ModelRepositoryError(path, "not a torch.export archive (no single root)", model)
        root = roots.pop() + "/"
        inner = {n[len(root) :] for n in names}

        def read(name: str) -> bytes:
            return archive.read(root + name)

        if "archive_format" not in inner:
            if (
                "data.pkl" in inner
                or "constants.pkl" in inner
                or any(n.startswith("code/") for n in inner)
            ):
                raise ModelRepositoryError(
                    path,
                    "a TorchScript or torch.save file, not a torch.export program: pickled "
                    f"files are not loaded; {EXPORT_HINT}",
                    model,
                )
            raise ModelRepositoryError(path, "not a torch.export archive", model)
        if read("archive_format").decode(errors="replace").strip() != "pt2":
            raise ModelRepositoryError(path, "not a torch.export archive (archive_format)", model)
        if any(n.startswith("data/aotinductor/") for n in inner):
            raise ModelRepositoryError(
                path, "an AOTInductor package (compiled code): export without AOTInductor", model
            )
        programs = sorted(n for n in inner if n.startswith("models/") and n.endswith(".json"))
        if len(programs) != 1:
            raise ModelRepositoryError(
                path, f"expected one exported program, found {len(programs)}", model
            )
        for n in inner:
            if n.startswith(("data/weights/", "data/constants/")) and n.endswith(".pt"):
                raise ModelRepositoryError(
                    path, f"pickled weights ({n}, the legacy layout); {EXPORT_HINT}", model
                )
        for config in sorted(n for n in inner if n.endswith("_config.json")):
            try:
                entries = json.loads(read(config)).get("config", {})
            except (ValueError, AttributeError) as e:
                raise ModelRepositoryError(path, f"{config}: bad JSON: {e}", model) from e
            for fqn, meta in entries.items():
                pickled = not isinstance(meta, dict) or meta.get("use_pickle", False)
                kind = str(meta.get("path_name", "")) if isinstance(meta, dict) else ""
                if pickled or kind.startswith(("custom_obj", "opaque_obj")):
                    raise ModelRepositoryError(
                        path,
                        f"{fqn!r} is stored pickled (a tensor subclass or a Python object), "
                        "which is not loaded: export with plain tensors",
                        model,
                    )
        for sample in (n for n in inner if n.startswith("data/sample_inputs/")):
            try:
                torch.load(io.BytesIO(read(sample)), weights_only=True)
            except Exception as e:
                raise ModelRepositoryError(
                    path,
                    f"{sample} needs the full unpickler (weights-only refused it: "
                    f"{str(e).splitlines()[0][:200]})",
                    model,
                ) from e


def load_pt2(path: Path, model: str | None = None) -> ExportedProgram:
    """The program of a ``.pt2`` file, after :func:`check_pt2_archive`."""
    check_pt2_archive(path, model)
    try:
        return torch.export.load(str(path))
    except Exception as e:
        raise ModelRepositoryError(
            path, f"torch.export.load failed: {str(e).splitlines()[0][:300]}", model
        ) from e


def pt2_signature(program: ExportedProgram) -> FileSignature:
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    output_node = next(n for n in program.graph.nodes if n.op == "output")
    inputs = tuple(
        _fake_tensor(name, placeholders[name].meta.get("val"))
        for name in program.graph_signature.user_inputs
    )
    returned = output_node.args[0]
    results = list(returned) if isinstance(returned, tuple | list) else [returned]
    # the graph returns mutated buffers first, then the user outputs
    user = results[len(results) - len(program.graph_signature.user_outputs) :]
    outputs = tuple(
        _fake_tensor(f"output{i}", getattr(node, "meta", {}).get("val"))
        for i, node in enumerate(user)
    )
    return FileSignature(inputs, outputs, named=False)


def _fake_tensor(name: str, value: object) -> FileTensor:
    if not isinstance(value, torch.Tensor):
        raise InvalidInputError(f"{name} is not a tensor (a {type(value).__name__})")
    dims = tuple(d if isinstance(d, int) else None for d in value.shape)
    return FileTensor(name, triton_dtype_name(value.dtype), dims)


# ------------------------------------------------------------------------------- .onnx


def onnx_signature(path: Path, model: str | None = None) -> FileSignature:
    """Inputs (initializers excluded) and outputs of an ONNX file, read without its weights."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except FileNotFoundError:
        raise ModelRepositoryError(path, "model file does not exist", model) from None
    except Exception as e:
        raise ModelRepositoryError(
            path, f"not a valid ONNX file: {str(e).splitlines()[0][:300]}", model
        ) from e
    initializers = {i.name for i in proto.graph.initializer}

    def tensor(value: Any) -> FileTensor:
        ttype = value.type.tensor_type
        dtype = ONNX_DTYPES.get(ttype.elem_type)
        if dtype is None:
            raise ModelRepositoryError(
                path,
                f"{value.name!r} has ONNX element type {ttype.elem_type}, which this server "
                "does not take",
                model,
            )
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim)
        return FileTensor(value.name, dtype, dims)

    inputs = tuple(tensor(v) for v in proto.graph.input if v.name not in initializers)
    outputs = tuple(tensor(v) for v in proto.graph.output)
    return FileSignature(inputs, outputs, named=True)


def check_onnx_runs(path: Path, model: str | None = None) -> None:
    """Refuse an ONNX file that ONNX Runtime cannot make a session of (an operator it lacks, an
    opset it does not know), naming ORT's reason. The session is made on the CPU without graph
    optimizations (the quickest check) and dropped."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:
        reason = str(e).splitlines()[0][:400]
        raise ModelRepositoryError(
            path, f"ONNX Runtime {ort.__version__} cannot run it: {reason}", model
        ) from e


# ------------------------------------------------------------------------------- value ranges


def pt2_input_ranges(program: ExportedProgram) -> dict[str, tuple[int, int]]:
    """Input name -> (0, rows - 1) for each user input that indexes an embedding table (a
    parameter or buffer) directly: the values an ``aten.embedding`` takes without failing."""
    tables = {
        **program.graph_signature.inputs_to_parameters,
        **program.graph_signature.inputs_to_buffers,
    }
    user = set(program.graph_signature.user_inputs)
    ranges: dict[str, tuple[int, int]] = {}
    for node in program.graph.nodes:
        if node.op != "call_function" or node.target is not torch.ops.aten.embedding.default:
            continue
        weight, indices = node.args[0], node.args[1]
        name = getattr(indices, "name", None)
        table = tables.get(getattr(weight, "name", ""))
        if name not in user or table is None or table not in program.state_dict:
            continue
        rows = int(program.state_dict[table].shape[0])
        _narrow(ranges, str(name), rows)
    return ranges


def onnx_input_ranges(path: Path) -> dict[str, tuple[int, int]]:
    """Input name -> (0, rows - 1) for each graph input that a ``Gather`` on axis 0 of an
    initializer takes as its indices (through ``Cast``/``Identity`` nodes): an embedding table.
    ONNX's Gather would read a negative index from the table's end, which an embedding lookup
    exported from torch never means, and fails past it."""
    import onnx
    from onnx import helper

    proto = onnx.load(str(path), load_external_data=False)
    rows = {init.name: int(init.dims[0]) for init in proto.graph.initializer if init.dims}
    inputs = {v.name for v in proto.graph.input} - set(rows)
    source: dict[str, str] = {}  # the output of a Cast or Identity -> what it passes on
    for node in proto.graph.node:
        if node.op_type in ("Cast", "Identity") and len(node.input) == 1:
            source[node.output[0]] = node.input[0]

    def origin(name: str) -> str:
        seen = 0
        while name in source and seen < 16:
            name, seen = source[name], seen + 1
        return name

    ranges: dict[str, tuple[int, int]] = {}
    for node in proto.graph.node:
        if node.op_type != "Gather" or len(node.input) != 2:
            continue
        axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 0)
        data, indices = origin(node.input[0]), origin(node.input[1])
        if axis == 0 and data in rows and indices in inputs:
            _narrow(ranges, indices, rows[data])
    return ranges


def _narrow(ranges: dict[str, tuple[int, int]], name: str, rows: int) -> None:
    if rows < 1:
        return
    known = ranges.get(name)
    ranges[name] = (0, rows - 1 if known is None else min(known[1], rows - 1))


# ------------------------------------------------------------------------------- both


def weights_sizes(repo: ModelRepository, name: str) -> list[tuple[str, int]]:
    """(tensor name, bytes) of the weights of ``name``'s latest version, as the backend pages
    them: a safetensors file's tensors, a ``.pt2`` program's parameters and buffers, an ONNX
    file's initializers (read from the headers where the format allows)."""
    config = repo.load_config(name)
    version = max(config.versions)
    if config.format is ModelFormat.BUILTIN:
        return [(k, int(t.nbytes)) for k, t in repo.load_weights(name, version).items()]
    path = repo.weights_path(name, version)
    if config.format is ModelFormat.TORCH_EXPORT:
        program = repo.pt2_program(name, version)
        return [(k, int(t.nbytes)) for k, t in program.state_dict.items()]
    import onnx
    from onnx import helper

    proto = onnx.load(str(path), load_external_data=False)
    sizes: list[tuple[str, int]] = []
    for init in proto.graph.initializer:
        itemsize = helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
        count = 1
        for d in init.dims:
            count *= int(d)
        sizes.append((init.name, count * itemsize))
    return sizes


def file_signature(fmt: ModelFormat, path: Path, model: str | None = None) -> FileSignature:
    if fmt is ModelFormat.TORCH_EXPORT:
        return pt2_signature(load_pt2(path, model))
    if fmt is ModelFormat.ONNX:
        sig = onnx_signature(path, model)
        check_onnx_runs(path, model)
        return sig
    raise InvalidInputError(f"format {fmt.value} has no model file")


def config_tensors(
    sig: FileSignature, max_batch_size: int
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The config ``inputs``/``outputs`` a file's signature gives (batch dimension dropped);
    InvalidInputError if a shape is not fixed past the batch or the batch does not fit."""
    batch_problem = _batch_problem(sig, max_batch_size)
    if batch_problem:
        raise InvalidInputError(batch_problem)

    def specs(tensors: Sequence[FileTensor]) -> tuple[TensorSpec, ...]:
        out: list[TensorSpec] = []
        for t in tensors:
            rest = t.dims[1:]
            if any(d is None for d in rest):
                raise InvalidInputError(
                    f"{t.show()}: only the first (batch) dimension may vary; export with "
                    "fixed sizes for the others"
                )
            out.append(TensorSpec(t.name, t.dtype, tuple(d for d in rest if d is not None)))
        return tuple(out)

    return specs(sig.inputs), specs(sig.outputs)


def check_signature(
    sig: FileSignature,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    max_batch_size: int,
) -> None:
    """InvalidInputError listing every difference between the file and the config."""
    problems: list[str] = []
    batch_problem = _batch_problem(sig, max_batch_size)
    if batch_problem:
        problems.append(batch_problem)
    problems += _compare("input", sig.inputs, inputs, by_name=sig.named)
    problems += _compare("output", sig.outputs, outputs, by_name=sig.named)
    if problems:
        raise InvalidInputError("does not match its config: " + "; ".join(problems))


def _batch_problem(sig: FileSignature, max_batch_size: int) -> str:
    for t in (*sig.inputs, *sig.outputs):
        if not t.dims:
            return f"{t.show()} has no batch dimension (a scalar)"
        first = t.dims[0]
        if first is not None and first != 1:
            return (
                f"{t.show()}: the first dimension is fixed at {first}; export it as a dynamic "
                "batch dimension (dynamic_shapes / dynamic_axes)"
            )
        if first == 1 and max_batch_size > 1:
            return (
                f"{t.show()}: the batch dimension is fixed at 1, but max_batch_size is "
                f"{max_batch_size}; export it as dynamic or set max_batch_size 1"
            )
    return ""


def _compare(
    which: str, file: Sequence[FileTensor], config: Sequence[TensorSpec], *, by_name: bool
) -> list[str]:
    problems: list[str] = []
    if by_name:
        file_names = [t.name for t in file]
        config_names = [t.name for t in config]
        if sorted(file_names) != sorted(config_names):
            return [f"{which}s are {file_names} in the file, {config_names} in the config"]
        pairs = [(t, next(c for c in config if c.name == t.name)) for t in file]
    else:
        if len(file) != len(config):
            return [f"the file has {len(file)} {which}(s), the config {len(config)}"]
        pairs = list(zip(file, config, strict=True))
    for t, c in pairs:
        if t.dtype != c.dtype:
            problems.append(f"{which} {c.name!r} is {t.dtype} in the file, {c.dtype} in the config")
        rest = t.dims[1:]
        if len(rest) != len(c.shape) or any(
            d is not None and d != e for d, e in zip(rest, c.shape, strict=False)
        ):
            problems.append(
                f"{which} {c.name!r} has dims {list(c.shape)} in the config, the file has "
                f"{t.show()} (batch first)"
            )
        elif any(d is None for d in rest):
            problems.append(f"{which} {c.name!r}: only the batch dimension may vary in the file")
    return problems
