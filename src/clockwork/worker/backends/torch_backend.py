"""The real backend: PyTorch models whose parameters are views into a paged weights cache.

At start, for every model it may serve, the backend holds:

- the host weights: the model's safetensors file memory-mapped (models sharing a file share one
  mapping); on CUDA, one pinned host copy per file, so that loads are plain DMA copies;
- a module *skeleton* on the meta device (no memory), one per (architecture, parameters), shared
  by every model of that shape;
- the model's page plan at this device's page size (``pack_tensors``).

Models of one's own run the same way (``clockwork.worker.backends.programs``): a ``.pt2``
program's parameters and buffers are its host tensors, and its own unlifted module is bound to
their views; an ``.onnx`` model's initializers are its host tensors, and each load makes an ONNX
Runtime session over their views (``clockwork.worker.backends.onnx_program``).

``load`` takes pages from the :class:`~clockwork.worker.weights_cache.WeightsCache` (one
pre-allocated pool), copies each tensor into its view of the pool, and keeps the views as the
model's parameter dict. ``infer`` runs the skeleton's one real copy (``BoundModule``, one per
architecture) with its tensor slots pointed at the views: no module is built or moved per load,
and evicting is returning pages to the free list.

Timing: on CUDA, loads run on a dedicated load stream and inferences on an inference stream,
each phase (input copy, execution, output copy) timed with CUDA events; on the CPU, with
``time.perf_counter_ns`` (input copy = stacking, validating and padding the requests; output
copy = splitting the result into per-request numpy arrays).

Models added later: ``add_model``/``add_models`` register models that appeared in the repository
after the backend was made (a rescan), in host memory as above, without touching the cache or the
models already served. The runtime learns of them through ``models()``.

Threads: on the CPU the backend fixes torch's intra-op thread count (``threads``, default 1) when
it is made. Fewer threads are slower at peak but far steadier, and Clockwork's controller plans
with the 99th percentile: predictability over peak speed. The setting is process-wide.

Calls follow the :class:`~clockwork.worker.backends.base.Backend` contract: at most one ``infer``
at a time, at most one ``load`` beside it, and no ``evict`` of a model while it runs.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from clockwork.core.errors import ConfigurationError, InvalidInputError
from clockwork.core.profile import DeviceKind
from clockwork.core.units import MIB
from clockwork.models.config import ModelConfig
from clockwork.models.formats import ModelFormat
from clockwork.models.packing import PagePlan, pack_tensors
from clockwork.models.repository import ModelRepository
from clockwork.worker.backends.base import BackendError, InferOutput, PhaseTimes
from clockwork.worker.backends.bound_module import BoundModule
from clockwork.worker.backends.programs import LoadedProgram, ModuleProgram, Program, open_pt2
from clockwork.worker.device_state import WorkerModel
from clockwork.worker.weights_cache import WeightsCache, WeightsCacheError

_log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE_BYTES = 16 * MIB
# CPU: 64 pages = 1 GiB of lazily committed host memory (raised to the largest model's need).
DEFAULT_CPU_CACHE_PAGES = 64
# CUDA: this share of the device's total memory, the rest left for activations and workspace.
DEFAULT_CUDA_CACHE_FRACTION = 0.5

_NUMPY_DTYPES: dict[str, np.dtype[np.generic]] = {
    name: np.dtype(dt)
    for name, dt in {
        "BOOL": np.bool_,
        "UINT8": np.uint8,
        "UINT16": np.uint16,
        "UINT32": np.uint32,
        "UINT64": np.uint64,
        "INT8": np.int8,
        "INT16": np.int16,
        "INT32": np.int32,
        "INT64": np.int64,
        "FP16": np.float16,
        "FP32": np.float32,
        "FP64": np.float64,
    }.items()
}

_ArchKey = tuple[str, tuple[tuple[str, object], ...]]


def default_kind(
    device: str | torch.device,
    cache_pages: int | None = None,
    page_size_bytes: int = DEFAULT_PAGE_SIZE_BYTES,
) -> DeviceKind:
    """``cpu`` or the CUDA device's name, 16 MiB pages, and ``cache_pages`` (default: 64 pages
    on the CPU; half the device's memory on CUDA)."""
    dev = _parse_device(device)
    if dev.type == "cpu":
        return DeviceKind("cpu", page_size_bytes, cache_pages or DEFAULT_CPU_CACHE_PAGES)
    props = torch.cuda.get_device_properties(dev)
    if cache_pages is None:
        cache_pages = max(
            1, int(props.total_memory * DEFAULT_CUDA_CACHE_FRACTION) // page_size_bytes
        )
    return DeviceKind(str(props.name), page_size_bytes, cache_pages)


@dataclass(slots=True)
class _Model:
    config: ModelConfig
    version: int
    host: Mapping[str, torch.Tensor]  # name -> host tensor (mmap, or pinned on CUDA)
    # what runs over the views: for a built-in architecture, the skeleton's one copy per
    # architecture; for a model file, its own program
    program: Program
    plan: PagePlan
    worker_model: WorkerModel
    # integer input -> the least and greatest value it may hold (ModelConfig.input_ranges)
    value_ranges: dict[str, tuple[int, int]]


class TorchBackend:
    """One device (``cpu`` or ``cuda:N``) serving the models of a repository. See the module
    docstring.

    ``kind`` fixes the page size and cache size; without it the kind is named ``cpu`` or after
    the CUDA device, with 16 MiB pages and ``cache_pages`` pages (default: 64 on the CPU, raised
    to the largest model's need; half the device memory on CUDA). ``models`` restricts the
    backend to those names (default: every valid model of the repository); each model serves
    its latest version. ``threads`` is torch's intra-op thread count on the CPU (process-wide).
    ``onnx_in_place``: see ``clockwork.worker.backends.onnx_program``.
    """

    def __init__(
        self,
        repository: ModelRepository,
        device: str = "cpu",
        kind: DeviceKind | None = None,
        threads: int = 1,
        models: Sequence[str] | None = None,
        *,
        cache_pages: int | None = None,
        onnx_in_place: bool = False,
    ) -> None:
        self.device = _parse_device(device)
        # .onnx on the CPU: ORT's weight-copying passes off (slower; onnx_program's docstring)
        self.onnx_in_place = onnx_in_place
        self.repository = repository
        self.threads = threads
        if self.device.type == "cpu":
            if threads < 1:
                raise ConfigurationError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        page_size = kind.page_size_bytes if kind is not None else DEFAULT_PAGE_SIZE_BYTES
        self._page_size_bytes = page_size
        self.name = f"torch:{self.device}"

        if models is None:
            configs = repository.scan()
        else:
            configs = {name: repository.load_config(name) for name in models}
        # kept so that models added later share skeletons and host mappings with these
        self._skeletons: dict[_ArchKey, nn.Module] = {}
        self._runners: dict[_ArchKey, BoundModule] = {}
        self._host_files: dict[str, dict[str, torch.Tensor]] = {}
        # serialises add_model; reads of the two dicts below take no lock: an addition replaces
        # them with grown copies (one reference assignment each), never changes them in place
        self._add_lock = threading.Lock()
        self._models: dict[str, _Model] = {}
        for name, config in configs.items():
            if config.format is ModelFormat.BUILTIN:
                self._models[name] = self._register(config, self._skeletons, self._host_files)
                continue
            try:  # a model file that cannot be opened must not stop the others
                self._models[name] = self._register(config, self._skeletons, self._host_files)
            except Exception as e:
                _log.warning("model %s not served on %s: %s", name, self.device, e)
        self._worker_models = {name: m.worker_model for name, m in self._models.items()}

        if kind is None:
            kind = default_kind(self.device, cache_pages, page_size)
            largest = max((m.plan.num_pages for m in self._models.values()), default=0)
            if cache_pages is None and largest > kind.cache_pages:
                kind = DeviceKind(kind.name, page_size, largest)
        elif cache_pages is not None and cache_pages != kind.cache_pages:
            raise ConfigurationError(
                f"cache_pages {cache_pages} contradicts kind {kind.name!r} "
                f"({kind.cache_pages} pages)"
            )
        self.kind = kind
        self.cache = WeightsCache(self.device, kind.page_size_bytes, kind.cache_pages)

        self._loaded: dict[str, tuple[dict[str, torch.Tensor], LoadedProgram]] = {}
        self._lock = threading.Lock()
        if self.device.type == "cuda":
            self._load_stream: torch.cuda.Stream | None = _new_stream(self.device)
            self._infer_stream: torch.cuda.Stream | None = _new_stream(self.device)
        else:
            self._load_stream = self._infer_stream = None

    # ------------------------------------------------------------------ registration

    def _register(
        self,
        config: ModelConfig,
        skeletons: dict[_ArchKey, nn.Module],
        host_files: dict[str, dict[str, torch.Tensor]],
    ) -> _Model:
        version = max(config.versions)
        if config.format is not ModelFormat.BUILTIN:
            return self._register_file(config, version)
        resolved = self.repository.weights_path(config.name, version).resolve()
        st = resolved.stat()
        # the file's identity too: a model added later must not get the old mapping of a shared
        # file that was replaced (renamed over) since
        path = f"{resolved}@{st.st_ino}:{st.st_mtime_ns}"
        host = host_files.get(path)
        if host is None:
            host = self.repository.load_weights(config.name, version)  # memory-mapped
            if self.device.type == "cuda":
                host = {k: t.pin_memory() for k, t in host.items()}
            host_files[path] = host
        key: _ArchKey = (config.architecture, tuple(sorted(config.arch_params.items())))
        skeleton = skeletons.get(key)
        if skeleton is None:
            skeleton = config.arch_spec.build_skeleton(config.arch_params)
            names = {n for n, _ in skeleton.named_parameters()}
            names |= {n for n, _ in skeleton.named_buffers()}
            missing = sorted(names - set(host))
            if missing:
                raise ConfigurationError(
                    f"model {config.name!r}: the module has tensors its weights file lacks "
                    f"(non-persistent buffers?): {missing[:5]}"
                )
            skeletons[key] = skeleton
        runner = self._runners.get(key)
        if runner is None:
            runner = self._runners[key] = BoundModule(skeleton, host.keys())
        plan = pack_tensors(host, self._page_size_bytes)
        self._check_dtypes(config)
        return _Model(
            config,
            version,
            host,
            ModuleProgram(host, runner),
            plan,
            WorkerModel(config.name, plan.num_pages, config.batch_sizes),
            config.input_ranges,
        )

    def _register_file(self, config: ModelConfig, version: int) -> _Model:
        """A ``.pt2`` or ``.onnx`` model: its program, holding its tensors in host memory."""
        self._check_dtypes(config)
        path = self.repository.weights_path(config.name, version)
        program: Program
        if config.format is ModelFormat.TORCH_EXPORT:
            # the program the repository read for its check: read once per file
            pt2 = self.repository.pt2_program(config.name, version)
            program = open_pt2(path, pt2, config, self.device)
        else:
            from clockwork.worker.backends.onnx_program import open_onnx

            program = open_onnx(
                path, config, self.device, self.threads, in_place=self.onnx_in_place
            )
        host = program.host
        if self.device.type == "cuda":
            # pinned in place: the program reads the same tensors
            for t in host.values():
                if t.numel():
                    t.data = t.pin_memory()
        plan = pack_tensors(host, self._page_size_bytes)
        return _Model(
            config,
            version,
            host,
            program,
            plan,
            WorkerModel(config.name, plan.num_pages, config.batch_sizes),
            config.input_ranges,
        )

    @staticmethod
    def _check_dtypes(config: ModelConfig) -> None:
        for spec in config.inputs:
            if spec.dtype not in _NUMPY_DTYPES:
                raise ConfigurationError(
                    f"model {config.name!r}: input {spec.name!r} has dtype {spec.dtype}, which "
                    "this backend cannot take from numpy"
                )

    def add_model(self, name: str) -> WorkerModel:
        """Register the repository's model ``name`` (latest version) as at start: validate it,
        map its weights into host memory (pinned on CUDA), plan its pages. Raises (and registers
        nothing) if the model is invalid or can never fit this device's cache. A model already
        registered is left as it is (its ``WorkerModel`` is returned)."""
        with self._add_lock:
            known = self._models.get(name)
            if known is not None:
                return known.worker_model
            config = self.repository.load_config(name)
            model = self._register(config, self._skeletons, self._host_files)
            pages = model.worker_model.pages
            if pages > self.kind.cache_pages:
                # the cache was sized at start; a model larger than all of it could never load
                raise ConfigurationError(
                    f"model {name!r} needs {pages} pages of {self.kind.page_size_bytes} bytes; "
                    f"the weights cache of {self.device} has {self.kind.cache_pages}"
                )
            self._models = {**self._models, name: model}
            self._worker_models = {**self._worker_models, name: model.worker_model}
            return model.worker_model

    def add_models(self, names: Sequence[str]) -> list[str]:
        """``add_model`` each of ``names``; a model that fails is logged and skipped (the others
        are still added). Returns the names registered now or before, in order."""
        added: list[str] = []
        for name in names:
            try:
                self.add_model(name)
            except Exception as e:  # one bad model must not stop the others or the worker
                _log.warning("model %s not added on %s: %s", name, self.device, e)
                continue
            added.append(name)
        return added

    # ------------------------------------------------------------------ Backend protocol

    def models(self) -> Mapping[str, WorkerModel]:
        return self._worker_models

    def config(self, model: str) -> ModelConfig:
        return self._model(model).config

    def plan(self, model: str) -> PagePlan:
        """The model's page plan at this device's page size."""
        return self._model(model).plan

    def loaded(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._loaded)

    def load(self, model: str) -> PhaseTimes:
        m = self._model(model)
        with self._lock:
            if model in self._loaded:
                raise BackendError(f"model {model!r} is already loaded on {self.device}")
        try:
            pages = self.cache.place(model, m.plan)
        except WeightsCacheError as e:
            raise BackendError(f"cannot load {model!r} on {self.device}: {e}") from e
        try:
            views: dict[str, torch.Tensor] = {}
            for placement in m.plan.placements:
                host = m.host[placement.name]
                if placement.nbytes == 0:
                    views[placement.name] = torch.empty(
                        host.shape, dtype=host.dtype, device=self.device
                    )
                else:
                    views[placement.name] = self.cache.view(
                        pages[placement.page], placement.offset_bytes, host.dtype, host.shape
                    )
            copy_ns = self._copy_in(views, m.host)
            # making what runs over the views counts in the load (an ONNX Runtime session)
            t0 = time.perf_counter_ns()
            bound = m.program.bind(views)
            copy_ns += time.perf_counter_ns() - t0
        except BaseException as e:
            self.cache.release(model)
            if isinstance(e, Exception) and not isinstance(e, BackendError):
                raise BackendError(f"loading {model!r} on {self.device} failed: {e}") from e
            raise
        with self._lock:
            self._loaded[model] = (views, bound)
        return PhaseTimes(input_copy_ns=0, exec_ns=copy_ns, output_copy_ns=0)

    def evict(self, model: str) -> None:
        with self._lock:
            entry = self._loaded.pop(model, None)
        if entry is None:
            raise BackendError(f"model {model!r} is not loaded on {self.device}")
        entry[1].close()
        self.cache.release(model)

    def infer(
        self, model: str, batch_size: int, inputs: Sequence[Mapping[str, npt.NDArray[np.generic]]]
    ) -> InferOutput:
        m = self._model(model)
        with self._lock:
            entry = self._loaded.get(model)
        if entry is None:
            raise BackendError(f"model {model!r} is not loaded on {self.device}")
        t0 = time.perf_counter_ns()
        batch = self._stack(m, batch_size, inputs)
        args = tuple(torch.from_numpy(a) for a in batch)
        staging_ns = time.perf_counter_ns() - t0
        try:
            if self._infer_stream is not None:
                outs, times = self._run_cuda(m, entry[1], args, staging_ns)
            else:
                outs, times = self._run_cpu(m, entry[1], args, staging_ns, t0)
        except (RuntimeError, IndexError, ValueError, TypeError) as e:
            raise BackendError(f"model {model!r} failed on {self.device}: {e}") from e
        return InferOutput(outputs=outs[: len(inputs)], times=times)

    # ------------------------------------------------------------------ internals

    def _model(self, model: str) -> _Model:
        m = self._models.get(model)
        if m is None:
            raise BackendError(f"model {model!r} is not registered on {self.device}")
        return m

    def _copy_in(self, views: Mapping[str, torch.Tensor], host: Mapping[str, torch.Tensor]) -> int:
        if self._load_stream is None:
            t0 = time.perf_counter_ns()
            with torch.no_grad():
                for name, view in views.items():
                    if view.numel():
                        view.copy_(host[name])
            return time.perf_counter_ns() - t0
        start = _timing_event()
        end = _timing_event()
        with torch.no_grad(), torch.cuda.stream(self._load_stream):
            start.record(self._load_stream)
            for name, view in views.items():
                if view.numel():
                    view.copy_(host[name], non_blocking=True)
            end.record(self._load_stream)
        end.synchronize()
        return _event_ns(start, end)

    def _stack(
        self, m: _Model, batch_size: int, inputs: Sequence[Mapping[str, npt.NDArray[np.generic]]]
    ) -> list[np.ndarray]:
        config = m.config
        where = f"model {config.name!r}"
        if batch_size not in config.batch_sizes:
            raise BackendError(
                f"{where}: batch size {batch_size} is not one of {list(config.batch_sizes)}"
            )
        if len(inputs) > batch_size:
            raise BackendError(
                f"{where}: {len(inputs)} requests exceed batch size {batch_size} "
                f"(inputs {', '.join(s.name for s in config.inputs)})"
            )
        expected = {s.name for s in config.inputs}
        stacked: list[np.ndarray] = []
        for i, request in enumerate(inputs):
            extra = sorted(set(request) - expected)
            if extra:
                raise BackendError(
                    f"{where}: request {i}: unknown input tensor {extra[0]!r} "
                    f"(inputs are {sorted(expected)})"
                )
        for spec in config.inputs:
            dtype = _NUMPY_DTYPES[spec.dtype]
            buf = np.zeros((batch_size, *spec.shape), dtype=dtype)  # zero padding
            bounds = m.value_ranges.get(spec.name)
            for i, request in enumerate(inputs):
                arr = request.get(spec.name)
                if arr is None:
                    raise BackendError(
                        f"{where}: request {i}: input tensor {spec.name!r} is missing"
                    )
                if not isinstance(arr, np.ndarray):
                    raise BackendError(
                        f"{where}: request {i}: input tensor {spec.name!r} is a "
                        f"{type(arr).__name__}, not a numpy array"
                    )
                if arr.dtype != dtype:
                    raise BackendError(
                        f"{where}: request {i}: input tensor {spec.name!r} has "
                        f"dtype {arr.dtype}, expected {dtype} ({spec.dtype})"
                    )
                if arr.shape != spec.shape:
                    raise BackendError(
                        f"{where}: request {i}: input tensor {spec.name!r} has "
                        f"shape {list(arr.shape)}, expected {list(spec.shape)}"
                    )
                if (
                    bounds is not None
                    and arr.size
                    and (arr.min() < bounds[0] or arr.max() > bounds[1])
                ):
                    raise BackendError(
                        f"{where}: request {i}: input tensor {spec.name!r} has values outside "
                        f"[{bounds[0]}, {bounds[1] + 1}) (min {arr.min()}, max {arr.max()})"
                    )
                buf[i] = arr
            stacked.append(buf)
        return stacked

    def _run_cpu(
        self,
        m: _Model,
        run: LoadedProgram,
        args: tuple[torch.Tensor, ...],
        staging_ns: int,
        t0: int,
    ) -> tuple[list[dict[str, npt.NDArray[np.generic]]], PhaseTimes]:
        t1 = t0 + staging_ns
        with torch.inference_mode():
            result = run(*args)
        t2 = time.perf_counter_ns()
        outs = _split(m.config, result)
        t3 = time.perf_counter_ns()
        return outs, PhaseTimes(t1 - t0, t2 - t1, t3 - t2)

    def _run_cuda(
        self,
        m: _Model,
        run: LoadedProgram,
        args: tuple[torch.Tensor, ...],
        staging_ns: int,
    ) -> tuple[list[dict[str, npt.NDArray[np.generic]]], PhaseTimes]:
        stream = self._infer_stream
        assert stream is not None
        events = [_timing_event() for _ in range(4)]
        pinned = tuple(a.pin_memory() for a in args)
        with torch.inference_mode(), torch.cuda.stream(stream):
            events[0].record(stream)
            on_device = tuple(a.to(self.device, non_blocking=True) for a in pinned)
            events[1].record(stream)
            result = run(*on_device)
            events[2].record(stream)
            tensors = result if isinstance(result, tuple | list) else (result,)
            host = tuple(t.to("cpu") for t in tensors)  # synchronous copy on ``stream``
            events[3].record(stream)
        events[3].synchronize()
        outs = _split(m.config, host if isinstance(result, tuple | list) else host[0])
        return outs, PhaseTimes(
            staging_ns + _event_ns(events[0], events[1]),
            _event_ns(events[1], events[2]),
            _event_ns(events[2], events[3]),
        )


def _split(config: ModelConfig, result: object) -> list[dict[str, npt.NDArray[np.generic]]]:
    """Per-row dicts of the outputs (owned numpy copies), padding rows included."""
    tensors = list(result) if isinstance(result, tuple | list) else [result]
    if len(tensors) != len(config.outputs) or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise BackendError(
            f"model {config.name!r} returned {len(tensors)} outputs, expected {len(config.outputs)}"
        )
    arrays = [t.detach().cpu().numpy() for t in tensors if isinstance(t, torch.Tensor)]
    rows = arrays[0].shape[0]
    return [
        {spec.name: np.array(a[i]) for spec, a in zip(config.outputs, arrays, strict=True)}
        for i in range(rows)
    ]


def _event_ns(start: torch.cuda.Event, end: torch.cuda.Event) -> int:
    ms = float(start.elapsed_time(end))
    return max(0, math.floor(ms * 1e6))


def _new_stream(device: torch.device) -> torch.cuda.Stream:
    return torch.cuda.Stream(device)  # type: ignore[no-untyped-call]


def _timing_event() -> torch.cuda.Event:
    return torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]


def _parse_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise InvalidInputError(f"device {device!r} is not 'cpu' or 'cuda:N': {e}") from e
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise InvalidInputError(f"device {device!r}: only 'cpu' and 'cuda:N' are supported")
    if not torch.cuda.is_available():
        raise ConfigurationError(
            f"device {device!r}: CUDA is not available (torch {torch.__version__} "
            f"{'has no CUDA support' if torch.version.cuda is None else 'sees no GPU'})"
        )
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise ConfigurationError(
            f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)"
        )
    return torch.device("cuda", index)
