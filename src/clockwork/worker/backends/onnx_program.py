"""``.onnx`` models run by ONNX Runtime, with their initializers in the paged weights cache.

At registration the file is read once (external data included): its initializers become the
model's host tensors, the source of every load. A load copies them into the cache's pages and
then makes an ``InferenceSession`` from the file whose every initializer is overridden by
``SessionOptions.add_initializer`` with an ``OrtValue`` over its view (``OrtValue.from_dlpack``:
no copy), so that the session computes with the pages themselves. The session lives as long as
the model stays loaded; evicting drops it, then the pages go back to the free list.

What each provider copies (what is *not* the cache's pages):

- CPU execution provider: initializers given this way are used in place unless a graph pass
  rewrites them. At ORT's default level (``ORT_ENABLE_ALL``) the NCHWc layout pass reorders
  convolution weights into new buffers and MLAS pre-packs GEMM/convolution weights into its own:
  those copies are the session's, outside the cache, made at load and freed at eviction (so a
  loaded convolutional model holds its weights about twice in host memory; seen on a small conv
  net: its conv weights were copies, the biases and the linear layer in place). That is the
  default, because it is much faster: on MobileNetV2 at 64x64, one thread, median CPU time per
  run 1.45 ms at batch 1 and 8.20 ms at batch 8, against 4.48 ms and 29.47 ms with the passes
  off (BENCHMARKS.md, "Models of one's own"). ``in_place=True`` (``TorchBackend(onnx_in_place=
  True)``) makes sessions at ``ORT_ENABLE_EXTENDED`` with pre-packing off: then every
  initializer the session reads is a page (a test changes a page and sees the output change).
  Either way ORT parses the file's own copy of each initializer while making the session
  (transient, freed once the session is made, and paid in the load time).
- CUDA execution provider (written, not run here: this machine has no GPU): the views are CUDA
  tensors and the ``OrtValue`` wraps device memory, which the CUDA provider uses in place; cuDNN
  workspace and any weights a kernel transforms are its own. Inputs are bound by pointer (IO
  binding) on the device, outputs copied to the host by ORT.

The provider follows the backend's device: ``cuda:N`` needs the ``CUDAExecutionProvider`` in the
installed onnxruntime (``onnxruntime-gpu``), and is refused with that advice otherwise; on the
CPU, only the CPU provider runs, with the backend's thread count and no spinning threads (a
spinning pool makes timings of the models beside it noisy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clockwork.core.errors import ConfigurationError
from clockwork.models.config import ModelConfig
from clockwork.models.errors import ModelRepositoryError
from clockwork.worker.backends.programs import LoadedProgram

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"

Provider = str | tuple[str, dict[str, str]]


def onnx_providers(device: torch.device, available: Sequence[str]) -> list[Provider]:
    """The execution providers for ``device``, given onnxruntime's ``available`` ones."""
    if device.type == "cpu":
        return [CPU_PROVIDER]
    if device.type == "cuda":
        if CUDA_PROVIDER not in available:
            raise ConfigurationError(
                f"device {device}: the installed onnxruntime has no {CUDA_PROVIDER} (it has "
                f"{', '.join(available) or 'none'}); install onnxruntime-gpu to run .onnx "
                "models on CUDA"
            )
        index = device.index if device.index is not None else 0
        # the CPU provider stays as the fallback for the few ops the CUDA one lacks
        return [(CUDA_PROVIDER, {"device_id": str(index)}), CPU_PROVIDER]
    raise ConfigurationError(f"device {device}: ONNX models run on cpu or cuda:N")


@dataclass(slots=True)
class OnnxProgram:
    """One ``.onnx`` model; see the module docstring."""

    path: Path
    host: Mapping[str, torch.Tensor]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    device: torch.device
    providers: list[Provider]
    threads: int
    # CPU: turn off the graph passes that copy weights out of the pages (module docstring)
    in_place: bool = False

    def bind(self, views: Mapping[str, torch.Tensor]) -> LoadedProgram:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: ORT's warnings would go to stderr
        if self.device.type == "cpu":
            if self.in_place:
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
                options.add_session_config_entry("session.disable_prepacking", "1")
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        values = {name: ort.OrtValue.from_dlpack(view) for name, view in views.items()}
        for name, value in values.items():
            options.add_initializer(name, value)
        try:
            session = ort.InferenceSession(str(self.path), options, providers=self.providers)
        except Exception as e:
            raise ModelRepositoryError(
                self.path,
                f"ONNX Runtime cannot run it: {str(e).splitlines()[0][:400]}",
            ) from e
        return _OnnxSession(self, session, values)


@dataclass(slots=True)
class _OnnxSession:
    program: OnnxProgram
    session: Any
    # the OrtValues over the views: the session reads them, so they live as long as it does
    values: dict[str, Any]

    def __call__(self, *args: torch.Tensor) -> object:
        program = self.program
        if program.device.type == "cpu":
            feed = {name: a.numpy() for name, a in zip(program.input_names, args, strict=True)}
            outs = self.session.run(list(program.output_names), feed)
            return tuple(torch.from_numpy(np.asarray(o)) for o in outs)
        binding = self.session.io_binding()
        index = program.device.index if program.device.index is not None else 0
        for name, arg in zip(program.input_names, args, strict=True):
            tensor = arg.contiguous()
            binding.bind_input(
                name,
                "cuda",
                index,
                torch.empty((), dtype=tensor.dtype).numpy().dtype,
                list(tensor.shape),
                tensor.data_ptr(),
            )
        for name in program.output_names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return tuple(torch.from_numpy(np.asarray(o)) for o in binding.copy_outputs_to_cpu())

    def close(self) -> None:
        self.session = None
        self.values = {}


def open_onnx(
    path: Path, config: ModelConfig, device: torch.device, threads: int, *, in_place: bool = False
) -> OnnxProgram:
    """Read ``path`` (external data included) into host tensors; see the module docstring."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    providers = onnx_providers(device, ort.get_available_providers())
    try:
        proto = onnx.load(str(path))
        host: dict[str, torch.Tensor] = {}
        for init in proto.graph.initializer:
            array = numpy_helper.to_array(init)
            host[init.name] = torch.from_numpy(np.array(array, copy=True))
    except Exception as e:
        raise ModelRepositoryError(
            path, f"cannot read the ONNX file: {str(e).splitlines()[0][:300]}", config.name
        ) from e
    del proto
    return OnnxProgram(
        path=path,
        host=host,
        input_names=tuple(s.name for s in config.inputs),
        output_names=tuple(s.name for s in config.outputs),
        device=device,
        providers=providers,
        threads=threads,
        in_place=in_place,
    )
