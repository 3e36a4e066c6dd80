"""A Triton ``config.pbtxt`` read as a :class:`~clockwork.models.config.ModelConfig`.

Layout (Triton's)::

    REPO/<model>/config.pbtxt
    REPO/<model>/<version>/model.onnx        (or default_model_filename; versions are numbers)

The fields that matter here:

- ``platform`` / ``backend``: ``onnxruntime_onnx`` / ``onnxruntime`` serve ``.onnx``;
  ``torch_export`` (this server's name) or ``pytorch`` with a ``.pt2`` file serve a torch.export
  program. ``pytorch_libtorch`` with a ``.pt`` file (TorchScript), TensorRT, TensorFlow and Python
  models are refused, saying what to export instead.
- ``max_batch_size`` (>= 1: the first dimension of every tensor is the batch; 0 is refused,
  since this server batches every model);
- ``input`` / ``output``: ``name``, ``data_type`` (``TYPE_FP32`` ...), ``dims`` (without the
  batch; fixed sizes only);
- ``dynamic_batching { preferred_batch_size: [...] }``: the batch sizes the server runs are 1,
  the preferred ones and ``max_batch_size`` (without it: powers of two up to it);
- ``version_policy``: ``latest { num_versions: N }`` (default, N = 1), ``all { }``,
  ``specific { versions: [...] }``, over the numbered directories present;
- ``default_model_filename``; ``name`` (optional; must match the directory);
- ``parameters`` whose key is ``clockwork.value_range.<input>``: the values an integer input
  may take, ``string_value: "LEAST..GREATEST"`` (both allowed), e.g. token ids below the
  vocabulary size; a request with others is refused (400). Triton keeps such parameters and
  ignores them, so the file stays a Triton config. ``clockwork models import`` writes them where
  the file shows the range (an input that indexes an embedding), and a comment saying so where
  it does not.

Every other field (``instance_group``, ``optimization``, other ``parameters``, ...) is kept in
the config's ``notes`` as ignored, and ``clockwork models list`` shows them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from clockwork.core.errors import InvalidInputError
from clockwork.models.config import ModelConfig
from clockwork.models.formats import EXPORT_HINT, ModelFormat, format_of_file
from clockwork.models.pbtxt import Enum, Scalar, TextMessage, parse_pbtxt
from clockwork.models.tensors import TRITON_DTYPES, TensorSpec, dtype_bounds

PBTXT_FILE = "config.pbtxt"

_KNOWN = frozenset(
    {
        "name",
        "platform",
        "backend",
        "max_batch_size",
        "input",
        "output",
        "dynamic_batching",
        "version_policy",
        "default_model_filename",
        "parameters",
    }
)
#: a ``parameters`` key that bounds an integer input's values (the input's name follows)
RANGE_PARAMETER = "clockwork.value_range."
_TENSOR_KNOWN = frozenset({"name", "data_type", "dims"})

_ONNX_NAMES = ("onnxruntime_onnx", "onnxruntime")
_PT2_NAMES = ("torch_export", "pytorch")
_REFUSED = {
    "pytorch_libtorch": f"TorchScript (pytorch_libtorch) is not served; {EXPORT_HINT}",
    "tensorrt_plan": "TensorRT plans are not served; give the ONNX file it was built from",
    "tensorrt": "TensorRT plans are not served; give the ONNX file it was built from",
    "tensorflow_savedmodel": "TensorFlow models are not served; convert to ONNX (tf2onnx)",
    "tensorflow_graphdef": "TensorFlow models are not served; convert to ONNX (tf2onnx)",
    "tensorflow": "TensorFlow models are not served; convert to ONNX (tf2onnx)",
    "python": "Python models are not served: export the network to .pt2 or .onnx",
}


def version_dirs(model_dir: Path) -> list[int]:
    """The numbered version directories of a model, ascending (others are ignored)."""
    try:
        entries = list(model_dir.iterdir())
    except OSError:
        return []
    return sorted(
        int(e.name)
        for e in entries
        if e.is_dir() and e.name.isdigit() and not e.name.startswith("0") and int(e.name) > 0
    )


def parse_triton_config(text: str, model_dir: Path) -> ModelConfig:
    """The config that ``text`` (a ``config.pbtxt``) describes for the model in ``model_dir``
    (its name is the directory's); InvalidInputError names the field and problem."""
    msg = parse_pbtxt(text)
    name = model_dir.name
    written_name = _optional_string(msg, "name")
    if written_name is not None and written_name not in ("", name):
        raise InvalidInputError(f"name {written_name!r} does not match its directory {name!r}")
    notes = [
        f"field {key!r} (line {msg.lines[key]}) is not used by this server; ignored"
        for key in msg.fields
        if key not in _KNOWN
    ]
    filename = _optional_string(msg, "default_model_filename")
    fmt = _format(msg, filename)
    max_batch_size = _int(msg, "max_batch_size", default=0)
    if max_batch_size < 1:
        raise InvalidInputError(
            f"max_batch_size is {max_batch_size}: this server batches every model along the "
            "first dimension; set max_batch_size >= 1 (and export the batch dimension as "
            "dynamic)"
        )
    inputs = _with_ranges(_tensors(msg, "input", notes), _value_ranges(msg, notes))
    outputs = _tensors(msg, "output", notes)
    batch_sizes = _batch_sizes(msg, max_batch_size, notes)
    versions = _versions(msg, version_dirs(model_dir))
    return ModelConfig(
        name=name,
        versions=tuple(versions),
        architecture="",
        arch_params={},
        inputs=inputs,
        outputs=outputs,
        max_batch_size=max_batch_size,
        batch_sizes=batch_sizes,
        format=fmt,
        model_filename=filename,
        notes=tuple(notes),
    )


def write_triton_config(config: ModelConfig) -> str:
    """A ``config.pbtxt`` for ``config`` (a model file's)."""
    platform = "onnxruntime_onnx" if config.format is ModelFormat.ONNX else "torch_export"
    lines = [
        f'name: "{config.name}"',
        f'platform: "{platform}"',
        f"max_batch_size: {config.max_batch_size}",
    ]
    if (
        config.model_filename is not None
        and config.model_filename != config.format.default_filename
    ):
        lines.append(f'default_model_filename: "{config.model_filename}"')
    for key, tensors in (("input", config.inputs), ("output", config.outputs)):
        for t in tensors:
            dims = ", ".join(str(d) for d in t.shape)
            lines.append(f'{key} {{ name: "{t.name}" data_type: TYPE_{t.dtype} dims: [ {dims} ] }}')
    preferred = [b for b in config.batch_sizes if b not in (1, config.max_batch_size)]
    if preferred:
        lines.append(
            f"dynamic_batching {{ preferred_batch_size: [ {', '.join(map(str, preferred))} ] }}"
        )
    else:
        lines.append("dynamic_batching { }")
    versions = ", ".join(map(str, config.versions))
    lines.append(f"version_policy: {{ specific {{ versions: [ {versions} ] }} }}")
    for t in config.inputs:
        key = f"{RANGE_PARAMETER}{t.name}"
        if t.value_range is not None:
            low, high = t.value_range
            lines.append(
                f'parameters {{ key: "{key}" value: {{ string_value: "{low}..{high}" }} }}'
            )
        elif dtype_bounds(t.dtype) is not None:
            lines.append(
                f"# input {t.name!r}: the file does not show which values it takes (only "
                f"{t.dtype}'s bounds are checked); to refuse others, add\n"
                f'# parameters {{ key: "{key}" value: {{ string_value: "LEAST..GREATEST" }} }}'
            )
    return "\n".join(lines) + "\n"


# -- fields ---------------------------------------------------------------------------------


def _format(msg: TextMessage, filename: str | None) -> ModelFormat:
    platform = _optional_string(msg, "platform")
    backend = _optional_string(msg, "backend")
    given = [v for v in (platform, backend) if v]
    if not given:
        if filename is not None:
            return format_of_file(filename)
        raise InvalidInputError(
            'neither platform nor backend is set (e.g. platform: "onnxruntime_onnx")'
        )
    for value in given:
        if value in _REFUSED:
            if value == "pytorch_libtorch" and filename and filename.endswith(".pt2"):
                return ModelFormat.TORCH_EXPORT
            raise InvalidInputError(f"{value}: {_REFUSED[value]}")
    kinds = set()
    for value in given:
        if value in _ONNX_NAMES:
            kinds.add(ModelFormat.ONNX)
        elif value in _PT2_NAMES:
            if value == "pytorch" and not (filename or "").endswith(".pt2"):
                raise InvalidInputError(
                    "backend 'pytorch' runs TorchScript (model.pt), which is not served; "
                    f'set default_model_filename: "model.pt2" for a torch.export program, '
                    f"or {EXPORT_HINT}"
                )
            kinds.add(ModelFormat.TORCH_EXPORT)
        else:
            raise InvalidInputError(
                f"platform/backend {value!r} is not served (onnxruntime_onnx, torch_export)"
            )
    if len(kinds) != 1:
        raise InvalidInputError(f"platform {platform!r} and backend {backend!r} disagree")
    return kinds.pop()


def _tensors(msg: TextMessage, key: str, notes: list[str]) -> tuple[TensorSpec, ...]:
    values = msg.values(key)
    if not values:
        raise InvalidInputError(f"no {key} tensors (each needs name, data_type, dims)")
    specs: list[TensorSpec] = []
    for value in values:
        if not isinstance(value, TextMessage):
            raise InvalidInputError(f"{key} must be a message {{ name, data_type, dims }}")
        name = _optional_string(value, "name")
        if not name:
            raise InvalidInputError(f"an {key} has no name")
        for extra in value.fields:
            if extra not in _TENSOR_KNOWN:
                notes.append(f"{key} {name!r}: field {extra!r} is not used; ignored")
        dtype = _one(value, "data_type", f"{key} {name!r}")
        if not isinstance(dtype, Enum) or not dtype.name.startswith("TYPE_"):
            raise InvalidInputError(f"{key} {name!r}: data_type must be TYPE_..., got {dtype!r}")
        short = dtype.name.removeprefix("TYPE_")
        if short == "STRING" or short not in TRITON_DTYPES or short == "BYTES":
            raise InvalidInputError(f"{key} {name!r}: data_type {dtype.name} is not served")
        dims = value.values("dims")
        if not dims or not all(isinstance(d, int) for d in dims):
            raise InvalidInputError(f"{key} {name!r}: dims must be a list of integers")
        if any(isinstance(d, int) and d < 1 for d in dims):
            raise InvalidInputError(
                f"{key} {name!r}: dims {dims} vary (-1); this server needs fixed sizes past "
                "the batch dimension"
            )
        specs.append(TensorSpec(name, short, tuple(d for d in dims if isinstance(d, int))))
    return tuple(specs)


def _value_ranges(msg: TextMessage, notes: list[str]) -> dict[str, tuple[int, int]]:
    """input name -> (least, greatest) from ``parameters`` keyed ``clockwork.value_range.*``;
    other parameters go to ``notes``."""
    ranges: dict[str, tuple[int, int]] = {}
    for entry in msg.values("parameters"):
        if not isinstance(entry, TextMessage):
            raise InvalidInputError("parameters must be messages { key: ... value: { ... } }")
        key = _optional_string(entry, "key") or ""
        if not key.startswith(RANGE_PARAMETER):
            notes.append(f"parameter {key!r} is not used by this server; ignored")
            continue
        name = key.removeprefix(RANGE_PARAMETER)
        values = entry.values("value")
        text = (
            _optional_string(values[0], "string_value")
            if len(values) == 1 and isinstance(values[0], TextMessage)
            else None
        )
        low, sep, high = (text or "").partition("..")
        try:
            if not sep:
                raise ValueError
            ranges[name] = (int(low), int(high))
        except ValueError:
            raise InvalidInputError(
                f'parameter {key!r}: value must be {{ string_value: "LEAST..GREATEST" }} '
                f"(integers, both allowed), got {text!r}"
            ) from None
    return ranges


def _with_ranges(
    inputs: tuple[TensorSpec, ...], ranges: dict[str, tuple[int, int]]
) -> tuple[TensorSpec, ...]:
    unknown = sorted(set(ranges) - {t.name for t in inputs})
    if unknown:
        raise InvalidInputError(
            f"parameter {RANGE_PARAMETER}{unknown[0]}: the model has no input {unknown[0]!r} "
            f"(its inputs: {', '.join(t.name for t in inputs)})"
        )
    return tuple(
        TensorSpec(t.name, t.dtype, t.shape, ranges[t.name]) if t.name in ranges else t
        for t in inputs
    )


def _batch_sizes(msg: TextMessage, max_batch_size: int, notes: list[str]) -> tuple[int, ...]:
    batching = msg.values("dynamic_batching")
    preferred: list[int] = []
    if batching:
        block = batching[0]
        if not isinstance(block, TextMessage):
            raise InvalidInputError("dynamic_batching must be a message")
        for value in block.values("preferred_batch_size"):
            if not isinstance(value, int) or not 1 <= value <= max_batch_size:
                raise InvalidInputError(
                    f"preferred_batch_size {value!r} is not in [1, max_batch_size {max_batch_size}]"
                )
            preferred.append(value)
        for extra in block.fields:
            if extra != "preferred_batch_size":
                notes.append(
                    f"dynamic_batching: {extra!r} is not used (the scheduler decides when to "
                    "run); ignored"
                )
    if not preferred:
        preferred = [1 << i for i in range(max_batch_size.bit_length()) if 1 << i <= max_batch_size]
    return tuple(sorted({1, *preferred, max_batch_size}))


def _versions(msg: TextMessage, present: Sequence[int]) -> list[int]:
    if not present:
        raise InvalidInputError("no numbered version directory (e.g. 1/) holds the model")
    policies = msg.values("version_policy")
    if not policies:
        return [present[-1]]
    policy = policies[0]
    if not isinstance(policy, TextMessage) or len(policy.fields) != 1:
        raise InvalidInputError("version_policy must hold one of latest, all, specific")
    ((kind, values),) = policy.fields.items()
    body = values[0]
    if not isinstance(body, TextMessage):
        raise InvalidInputError(f"version_policy {kind} must be a message")
    if kind == "all":
        return list(present)
    if kind == "latest":
        count = _int(body, "num_versions", default=1)
        if count < 1:
            raise InvalidInputError(f"version_policy latest num_versions must be >= 1, got {count}")
        return list(present[-count:])
    if kind == "specific":
        wanted = body.values("versions")
        if not wanted or not all(isinstance(v, int) for v in wanted):
            raise InvalidInputError("version_policy specific needs versions: [ ... ]")
        missing = [v for v in wanted if v not in present]
        if missing:
            raise InvalidInputError(
                f"version_policy names versions {missing} that have no directory "
                f"(present: {list(present)})"
            )
        return sorted({v for v in wanted if isinstance(v, int)})
    raise InvalidInputError(f"version_policy {kind!r} is not latest, all nor specific")


def _one(msg: TextMessage, key: str, where: str) -> Scalar | TextMessage:
    values = msg.values(key)
    if not values:
        raise InvalidInputError(f"{where}: missing {key}")
    if len(values) > 1:
        raise InvalidInputError(f"{where}: {key} given {len(values)} times")
    return values[0]


def _optional_string(msg: TextMessage, key: str) -> str | None:
    if not msg.values(key):
        return None
    value = _one(msg, key, "config")
    if not isinstance(value, str):
        raise InvalidInputError(f"{key} must be a quoted string, got {value!r}")
    return value


def _int(msg: TextMessage, key: str, default: int) -> int:
    if not msg.values(key):
        return default
    value = _one(msg, key, "config")
    if not isinstance(value, int):
        raise InvalidInputError(f"{key} must be an integer, got {value!r}")
    return value
