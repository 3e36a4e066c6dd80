"""Measure what a model costs on a device with the real backend, and write it as a profile.

For one model, :func:`profile_model` makes a :class:`~clockwork.worker.backends.torch_backend.
TorchBackend` holding only that model and measures:

- loads: ``loads`` load/evict cycles (after one untimed warm-up cycle), the backend's own copy
  time of each (host memory into cache pages);
- execution: for every supported batch size, ``warmup`` untimed runs and then ``runs`` timed
  runs of a full batch of random valid inputs. One run's time is the whole infer action as the
  worker's inference executor is busy with it: input copy + execution + output copy
  (``PhaseTimes``); the phases' own p50s are kept in ``extra``;
- sizes: weights bytes and pages from the pack plan at the device's page size; input and output
  bytes of one sample from the model's config.

The profile's ``exec_ns[b]`` and ``load_ns`` are the **99th percentile** (nearest rank: a time
that was actually observed) of the timed runs, the same statistic Clockwork's controller
estimates with; the full p50/p99/max table is in ``extra``.

:func:`profile_repository` profiles every model of a repository (models with the same
architecture, parameters and batch sizes are measured once and share the figures) and writes
``<model dir>/profile-<device kind>.json`` beside each model's ``config.json``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from clockwork.core.errors import InvalidInputError
from clockwork.core.profile import DeviceKind, Measurement, ModelProfile, save_profile
from clockwork.models.config import ModelConfig
from clockwork.models.profile_files import profile_path
from clockwork.models.repository import ModelRepository

DEFAULT_RUNS = 50
DEFAULT_WARMUP = 5
DEFAULT_LOADS = 10
MEASURED_BY = "clockwork profile"
STATISTIC = "p99"

# (model, batch size or None for loads, run index) -> None; lets a caller show progress.
Progress = Callable[[str, int | None, int], None]


@dataclasses.dataclass(frozen=True, slots=True)
class Stats:
    """Nearest-rank percentiles of a sample of durations in ns."""

    runs: int
    p50_ns: int
    p99_ns: int
    max_ns: int

    def to_json(self) -> dict[str, int]:
        return {
            "runs": self.runs,
            "p50_ns": self.p50_ns,
            "p99_ns": self.p99_ns,
            "max_ns": self.max_ns,
        }


def percentile_ns(values: Sequence[int], q: float) -> int:
    """The nearest-rank ``q``-th percentile (0 < q <= 100): the smallest observed value with at
    least q% of the sample at or below it."""
    if not values:
        raise InvalidInputError("percentile of an empty sample")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return int(ordered[min(rank, len(ordered)) - 1])


def stats(values: Sequence[int]) -> Stats:
    return Stats(
        len(values), percentile_ns(values, 50), percentile_ns(values, 99), int(max(values))
    )


def sample_inputs(
    config: ModelConfig,
    count: int,
    rng: np.random.Generator | None = None,
) -> list[dict[str, npt.NDArray[np.generic]]]:
    """``count`` random valid requests for ``config``: normal floats, integers in the range
    the model takes (``config.input_ranges``: token ids below the vocabulary size; else 0 or
    1), random booleans."""
    rng = rng if rng is not None else np.random.default_rng(0)
    ranges = config.input_ranges
    requests: list[dict[str, npt.NDArray[np.generic]]] = []
    for _ in range(count):
        request: dict[str, npt.NDArray[np.generic]] = {}
        for spec in config.inputs:
            dtype = np.dtype(torch.empty((), dtype=spec.torch_dtype).numpy().dtype)
            if dtype.kind == "f":
                request[spec.name] = rng.standard_normal(spec.shape).astype(dtype)
            elif dtype.kind == "b":
                request[spec.name] = rng.integers(0, 2, spec.shape).astype(dtype)
            else:
                low, high = ranges.get(spec.name, (0, 1))
                request[spec.name] = rng.integers(low, high, spec.shape, endpoint=True).astype(
                    dtype
                )
        requests.append(request)
    return requests


def device_description(device: str | torch.device, threads: int) -> str:
    """Where a measurement ran: CPU model (or CUDA device), torch version, threads."""
    dev = torch.device(device)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        return f"{name} (CUDA {torch.version.cuda}), host {cpu_model()}, torch {torch.__version__}"
    return (
        f"{cpu_model()} ({os.cpu_count()} logical cores), torch {torch.__version__}, "
        f"{threads} thread{'s' if threads != 1 else ''}"
    )


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def profile_model(
    repo: ModelRepository,
    name: str,
    device: str = "cpu",
    *,
    runs: int = DEFAULT_RUNS,
    warmup: int = DEFAULT_WARMUP,
    loads: int = DEFAULT_LOADS,
    threads: int = 1,
    batch_sizes: Sequence[int] | None = None,
    kind: DeviceKind | None = None,
    progress: Progress | None = None,
) -> ModelProfile:
    """Measure ``name`` on ``device`` with the torch backend; see the module docstring.

    ``batch_sizes`` restricts the measured sizes (default: all the model supports)."""
    from clockwork.worker.backends.torch_backend import TorchBackend

    if runs < 1 or warmup < 0 or loads < 1:
        raise InvalidInputError(
            f"runs and loads must be >= 1 and warmup >= 0, got {runs}, {loads}, {warmup}"
        )
    backend = TorchBackend(repo, device, kind=kind, threads=threads, models=[name])
    config = backend.config(name)
    sizes = tuple(config.batch_sizes if batch_sizes is None else batch_sizes)
    unsupported = [b for b in sizes if b not in config.batch_sizes]
    if unsupported or not sizes:
        raise InvalidInputError(
            f"model {name!r}: batch sizes {unsupported or list(sizes)} are not among its "
            f"{list(config.batch_sizes)}"
        )
    plan = backend.plan(name)

    backend.load(name)  # warm-up cycle: first touch of host and cache pages
    backend.evict(name)
    load_times: list[int] = []
    for i in range(loads):
        load_times.append(backend.load(name).exec_ns)
        if progress:
            progress(name, None, i)
        if i + 1 < loads:
            backend.evict(name)

    rng = np.random.default_rng(0)
    exec_table: dict[str, dict[str, Any]] = {}
    exec_ns: dict[int, int] = {}
    for b in sizes:
        requests = sample_inputs(config, b, rng)
        for _ in range(warmup):
            backend.infer(name, b, requests)
        totals: list[int] = []
        phases: list[tuple[int, int, int]] = []
        for i in range(runs):
            t = backend.infer(name, b, requests).times
            totals.append(t.input_copy_ns + t.exec_ns + t.output_copy_ns)
            phases.append((t.input_copy_ns, t.exec_ns, t.output_copy_ns))
            if progress:
                progress(name, b, i)
        s = stats(totals)
        exec_ns[b] = max(1, s.p99_ns)
        exec_table[str(b)] = {
            **s.to_json(),
            "input_copy_p50_ns": percentile_ns([p[0] for p in phases], 50),
            "exec_p50_ns": percentile_ns([p[1] for p in phases], 50),
            "output_copy_p50_ns": percentile_ns([p[2] for p in phases], 50),
        }
    backend.evict(name)
    load_stats = stats(load_times)
    how = (
        f"{loads} load/evict cycles after 1 warm-up; per batch size {warmup} warm-up + "
        f"{runs} timed runs of a full batch of random inputs, time = input copy + execution "
        f"+ output copy; exec_ns and load_ns are the {STATISTIC} (nearest rank); "
        f"page size {backend.kind.page_size_bytes} bytes"
    )
    return ModelProfile(
        model=name,
        device_kind=backend.kind.name,
        weights_bytes=plan.total_bytes,
        page_size_bytes=plan.page_size_bytes,
        weights_pages=plan.num_pages,
        load_ns=max(1, load_stats.p99_ns),
        exec_ns=exec_ns,
        input_bytes=config.input_bytes,
        output_bytes=config.output_bytes,
        measured=Measurement(
            by=MEASURED_BY, where=device_description(backend.device, threads), how=how
        ),
        extra={
            "statistic": STATISTIC,
            "threads": threads,
            "torch_version": torch.__version__,
            "device": str(backend.device),
            "version": max(config.versions),
            "load": load_stats.to_json(),
            "exec": exec_table,
        },
    )


def profile_repository(
    repo: ModelRepository,
    device: str = "cpu",
    out: Path | None = None,
    *,
    models: Iterable[str] | None = None,
    runs: int = DEFAULT_RUNS,
    warmup: int = DEFAULT_WARMUP,
    loads: int = DEFAULT_LOADS,
    threads: int = 1,
    progress: Progress | None = None,
) -> dict[str, tuple[ModelProfile, Path]]:
    """Profile ``models`` (default: every valid model of ``repo``), write each profile, and
    return them with their paths. Models that share architecture, parameters and batch sizes
    are measured once (on the first of them); the others get a copy under their own name."""
    names = list(models) if models is not None else list(repo.scan())
    if not names:
        raise InvalidInputError(f"{repo.root}: no models to profile")
    measured: dict[tuple[object, ...], ModelProfile] = {}
    written: dict[str, tuple[ModelProfile, Path]] = {}
    for name in names:
        config = repo.load_config(name)
        key = repo.measure_key(config)
        profile = measured.get(key)
        if profile is None:
            profile = profile_model(
                repo,
                name,
                device,
                runs=runs,
                warmup=warmup,
                loads=loads,
                threads=threads,
                progress=progress,
            )
            measured[key] = profile
        elif profile.model != name:
            profile = profile_of_copy(profile, name)
        path = profile_path(repo, name, profile.device_kind, out)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_profile(profile, path)
        written[name] = (profile, path)
    return written


def profile_of_copy(profile: ModelProfile, name: str) -> ModelProfile:
    """``profile``, measured on another model with the same measurement key (the repository's
    ``measure_key``: the same architecture, parameters and batch sizes, or the same model
    file), as the profile of ``name``; it says where it was measured."""
    return dataclasses.replace(
        profile,
        model=name,
        measured=dataclasses.replace(
            profile.measured,
            how=f"{profile.measured.how}; measured on {profile.model}, the same network "
            "(architecture, parameters and batch sizes, or model file)",
        ),
    )


def profile_table(profile: ModelProfile) -> str:
    """A human table of one profile: sizes, load and per-batch-size execution in ms."""
    extra: Mapping[str, Any] = profile.extra
    lines = [
        f"{profile.model} on {profile.device_kind}: {profile.weights_bytes:,} weights bytes in "
        f"{profile.weights_pages} page(s) of {_size(profile.page_size_bytes)}; "
        f"input {profile.input_bytes:,} B, output {profile.output_bytes:,} B per sample",
    ]
    load = extra.get("load")
    if isinstance(load, Mapping):
        lines.append(
            f"  load ms   p50 {load['p50_ns'] / 1e6:8.3f}  p99 {load['p99_ns'] / 1e6:8.3f}"
            f"  max {load['max_ns'] / 1e6:8.3f}  ({load['runs']} loads)"
        )
    lines.append(
        f"  {'batch':>5} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} {'p99/p50':>8} "
        f"{'exec p50':>9} {'runs':>5}"
    )
    table = extra.get("exec", {})
    for b in profile.batch_sizes:
        row = table.get(str(b)) if isinstance(table, Mapping) else None
        if isinstance(row, Mapping):
            lines.append(
                f"  {b:>5} {row['p50_ns'] / 1e6:9.3f} {row['p99_ns'] / 1e6:9.3f} "
                f"{row['max_ns'] / 1e6:9.3f} {row['p99_ns'] / max(1, row['p50_ns']):8.2f} "
                f"{row['exec_p50_ns'] / 1e6:9.3f} {row['runs']:>5}"
            )
        else:
            lines.append(f"  {b:>5} {'':>9} {profile.exec_ns[b] / 1e6:9.3f}")
    return "\n".join(lines)


def _size(nbytes: int) -> str:
    if nbytes % (1 << 20) == 0:
        return f"{nbytes >> 20} MiB"
    if nbytes % (1 << 10) == 0:
        return f"{nbytes >> 10} KiB"
    return f"{nbytes} B"
