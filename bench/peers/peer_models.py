"""The models of a Clockwork repository for the peer servers (Ray Serve, MLServer).

Both peer apps load every model with ``ModelRepository(root).build_module(name, version)``: the same
module code and the same weights (memory-mapped from the same safetensors files) as Clockwork's
worker. ``run_batch`` runs one batch the way Clockwork's torch backend does on the CPU
(``torch.inference_mode``, one intra-op thread set once per process by ``use_one_thread``).
A model whose version is an ONNX file (``model.onnx``, e.g. from ``clockwork models import``) runs
in an ONNX Runtime session made as Clockwork's worker makes its own (CPU provider, default graph
optimizations, one intra-op and one inter-op thread, no spinning; ``onnxruntime`` in the peer's
venv, pinned as in Clockwork's torch extra).

The peers run any batch size up to the model's ``max_batch_size``; Clockwork's worker pads a batch
up to the next of the model's ``batch_sizes`` (1, 2, 4, 8 for the demo models), so it computes a
few padding rows that the peers do not.

No ``from __future__ import annotations`` here: Ray Serve's FastAPI app imports this module and
the peers' frameworks read annotations at run time.
"""

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clockwork.models.config import ModelConfig
from clockwork.models.repository import ModelRepository
from clockwork.models.tensors import TensorSpec

#: Open Inference Protocol datatype -> numpy dtype (the datatypes a built-in architecture uses)
NUMPY_DTYPES = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}


@dataclass
class PeerModel:
    """One served model: its config, the version served (the latest) and its module."""

    config: ModelConfig
    version: int
    module: torch.nn.Module | None
    session: object = None  # an onnxruntime.InferenceSession for an ONNX model

    @property
    def name(self) -> str:
        return self.config.name

    def metadata(self, platform: str) -> dict[str, object]:
        """The Open Inference Protocol model metadata (``-1``: the batch dimension)."""
        return {
            "name": self.name,
            "versions": [str(self.version)],
            "platform": platform,
            "inputs": [tensor_metadata(t) for t in self.config.inputs],
            "outputs": [tensor_metadata(t) for t in self.config.outputs],
        }


def tensor_metadata(spec: TensorSpec) -> dict[str, object]:
    """``{"name", "datatype", "shape": [-1, ...]}`` of a model tensor."""
    return {
        "name": spec.name,
        "datatype": spec.dtype,
        "shape": [-1, *spec.shape],
    }


def use_one_thread(threads: int = 1) -> None:
    """Torch's intra-op threads for this process (Clockwork's worker uses ``--threads 1``)."""
    torch.set_num_threads(threads)


def repository_root(given: str | None = None) -> Path:
    """``given``, else ``$PEER_REPOSITORY``; the directory must exist."""
    root = given or os.environ.get("PEER_REPOSITORY")
    if not root:
        raise SystemExit("no model repository: set PEER_REPOSITORY or pass it")
    path = Path(root).resolve()
    if not path.is_dir():
        raise SystemExit(f"model repository {path} does not exist")
    return path


def load_model(repo: ModelRepository, name: str, build: bool = True) -> PeerModel:
    """Build ``name`` (its latest version) and run one batch of each size once, so that the
    first timed request does not pay torch's first-call costs; without ``build``, its config
    only (``module`` None: for a front end that only decodes requests)."""
    config = repo.load_config(name)
    version = max(config.versions)
    if not build:
        return PeerModel(config, version, None)
    path = repo.weights_path(name, version)
    if path.suffix == ".onnx":
        model = PeerModel(config, version, None, onnx_session(path))
    else:
        model = PeerModel(config, version, repo.build_module(name, version))
    for size in config.batch_sizes:
        run_batch(model, [np.stack([zeros_input(t) for _ in range(size)]) for t in config.inputs])
    return model


def load_all(
    root: Path, names: Sequence[str] | None = None, build: bool = True
) -> dict[str, PeerModel]:
    """Every valid model of the repository (or ``names``), by name; prints what it loads."""
    repo = ModelRepository(root)
    wanted = list(names) if names else sorted(repo.scan())
    models: dict[str, PeerModel] = {}
    t0 = time.perf_counter()
    for name in wanted:
        models[name] = load_model(repo, name, build)
    print(
        f"peer_models: {'loaded' if build else 'read the configs of'} {len(models)} model(s) "
        f"from {root} in "
        f"{time.perf_counter() - t0:.1f} s, torch threads {torch.get_num_threads()}",
        flush=True,
    )
    return models


def onnx_session(path: Path) -> object:
    """An ONNX Runtime session for ``path`` with the threads of ``use_one_thread``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def zeros_input(spec: TensorSpec) -> np.ndarray:
    return np.zeros(spec.shape, dtype=NUMPY_DTYPES[spec.dtype])


def run_batch(model: PeerModel, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run the model on stacked inputs (one array per model input, in the config's order, batch
    dimension first); the outputs in the config's order, as numpy arrays."""
    if model.session is not None:
        feed = {
            spec.name: np.ascontiguousarray(a)
            for spec, a in zip(model.config.inputs, inputs, strict=True)
        }
        names = [spec.name for spec in model.config.outputs]
        return [np.asarray(o) for o in model.session.run(names, feed)]  # type: ignore[attr-defined]
    assert model.module is not None, f"model {model.name!r} was not built"
    args = [torch.from_numpy(np.ascontiguousarray(a)) for a in inputs]
    with torch.inference_mode():
        result = model.module(*args)
    tensors = list(result) if isinstance(result, tuple | list) else [result]
    return [t.numpy() for t in tensors]


def decode_json_input(model: PeerModel, tensors: object) -> list[np.ndarray]:
    """The request's JSON ``inputs`` (name, shape, datatype, flat or nested data) as arrays in the
    config's input order; ``ValueError`` names what is wrong."""
    if not isinstance(tensors, list):
        raise ValueError("'inputs' must be a list of tensors")
    by_name = {t.get("name"): t for t in tensors if isinstance(t, dict)}
    arrays = []
    rows = None
    for spec in model.config.inputs:
        t = by_name.get(spec.name)
        if t is None:
            raise ValueError(f"input tensor {spec.name!r} is missing")
        if t.get("datatype") != spec.dtype:
            raise ValueError(
                f"input {spec.name!r}: datatype {t.get('datatype')!r}, expected {spec.dtype}"
            )
        shape = t.get("shape")
        if (
            not isinstance(shape, list)
            or len(shape) != len(spec.shape) + 1
            or list(shape[1:]) != list(spec.shape)
        ):
            raise ValueError(
                f"input {spec.name!r}: shape {shape}, expected "
                f"[batch, {', '.join(map(str, spec.shape))}]"
            )
        array = np.asarray(t.get("data"), dtype=NUMPY_DTYPES[spec.dtype]).reshape(shape)
        if rows is not None and array.shape[0] != rows:
            raise ValueError("the inputs' batch sizes differ")
        rows = array.shape[0]
        arrays.append(array)
    return arrays
