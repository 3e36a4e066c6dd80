"""The demo repository of ``clockwork serve``: four MobileNetV2 models, in the form that runs
fastest on the device it is made for.

The built-in form is written first (``create_repository``, seeded weights shared by the four).
Then the network is exported once to ONNX (and to a ``torch.export`` program when ``pt2`` is
among the forms asked for; see ``DEFAULT_FORMS``) under ``_demo/``; each form is imported into
a scratch repository, and the torch backend that will serve it runs each at batch 1, rounds
interleaved (on the CPU with one thread, the time taken is the thread's CPU time, which other
processes on the machine barely move; else wall-clock). The form with the lowest median becomes
the four models (their version files link to the one export), and ``_demo/choice.json`` says
which form was chosen, on which device, and the times; the server log says the same. A later
start on a device of another kind chooses again (the exports are kept); a demo repository
without that file (made before, or by hand) is left as it is.

The exporter is torch's TorchScript-based one (``dynamo=False``): about 1-4 s for this
network here, and nothing to install beyond torch and onnx (the dynamo exporter needs
``onnxscript`` and runs ``torch.export`` first). Most of what ``clockwork models export`` once
took went into its import reading the ``.pt2`` program three times (``torch.export.load``, 21 of
38 s profiled), not into exporting; it reads it once now.

A form that cannot run here is no candidate, with the reason logged: ONNX without
``onnxruntime`` (the ``torch`` extra installs it) or without the CUDA provider on a GPU. If no
export can run, the built-in form stays. ``forms`` restricts the candidates (``--demo-forms``;
``builtin`` alone skips exporting and timing).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clockwork.cli.demo_state import CHOICE_FILE, FORMS_DIR, has_models, read_choice
from clockwork.core.errors import InvalidInputError
from clockwork.models.formats import ModelFormat

if TYPE_CHECKING:
    from clockwork.models.config import ModelConfig

DEMO_ARCH = "mobilenet_v2"
DEMO_COPIES = 4
DEMO_BATCH_SIZES = (1, 2, 4, 8)
DEMO_RESOLUTION = 64
DEMO_SEED = 1
ALL_FORMS = (ModelFormat.BUILTIN, ModelFormat.ONNX, ModelFormat.TORCH_EXPORT)
#: the candidates unless told: a ``.pt2`` program runs the same ATen kernels as eager torch
#: (``ExportedProgram.module()``, nothing fused), so it is not faster than the built-in form
#: beyond noise (batch-1 CPU time 11.5 against 11.0 ms here), and exporting and reading it
#: costs about 12 s of CPU time, twice the rest of the preparation
DEFAULT_FORMS = (ModelFormat.BUILTIN, ModelFormat.ONNX)
#: where the exports and the record of the choice lie (a ``_`` directory is not a model)
#: batch-1 runs per form: untimed first, then timed rounds (each form once per round, in turn)
WARMUP_RUNS = 3
TIMED_ROUNDS = 15

log = logging.getLogger("clockwork.serve")


@dataclass(frozen=True, slots=True)
class FormChoice:
    """Which form the demo models take, and why."""

    device: str  # the device the forms were timed on (``cpu``, ``cuda:0``)
    device_kind: str  # its kind name, as profiles name it
    chosen: ModelFormat
    median_ms: dict[str, float]  # form -> median batch-1 time
    clock: str  # what was timed
    skipped: dict[str, str]  # form -> why it was no candidate
    seconds: float  # how long exporting and timing took

    def to_json(self) -> dict[str, object]:
        return {
            "device": self.device,
            "device_kind": self.device_kind,
            "chosen": self.chosen.value,
            "median_ms": self.median_ms,
            "clock": self.clock,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
        }

    def describe(self) -> str:
        if not self.median_ms:
            why = "; ".join(f"{f}: {w}" for f, w in self.skipped.items()) or (
                "only the built-in form was asked for"
            )
            return f"the {self.chosen.value} form on {self.device} (nothing else tried: {why})"
        times = ", ".join(
            f"{form} {ms:.2f} ms"
            for form, ms in sorted(self.median_ms.items(), key=lambda kv: kv[1])
        )
        text = (
            f"the {self.chosen.value} form on {self.device} (median batch-1 {self.clock}: {times}"
        )
        if self.skipped:
            text += "; not tried: " + "; ".join(f"{f}: {why}" for f, why in self.skipped.items())
        return text + f"; {self.seconds:.1f} s to export and time)"


def parse_forms(text: str) -> tuple[ModelFormat, ...]:
    """``builtin,onnx,pt2`` -> formats; the built-in form is always a candidate."""
    forms = [ModelFormat.parse(part.strip()) for part in text.split(",") if part.strip()]
    return tuple(dict.fromkeys([ModelFormat.BUILTIN, *forms]))


def resolve_device(device: str) -> str:
    """``auto``: the first CUDA device if there is one, else the CPU (as the worker does)."""
    if device != "auto":
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def model_names() -> list[str]:
    from clockwork.models.create import model_names as names

    return names(DEMO_ARCH, DEMO_COPIES)


def ensure_demo_repository(
    root: Path,
    device: str = "auto",
    *,
    threads: int = 1,
    forms: Sequence[ModelFormat] = DEFAULT_FORMS,
) -> FormChoice | None:
    """Make the demo repository at ``root`` unless it already holds models for a device of this
    kind; return the choice made now (None: nothing made)."""
    from clockwork.worker.backends.torch_backend import default_kind

    device = resolve_device(device)
    kind = default_kind(device).name
    if has_models(root):
        recorded = read_choice(root)
        if recorded is None or recorded.get("device_kind") == kind:
            return None
        log.info(
            "the demo repository %s/ was made for %s; choosing its form again for %s",
            root,
            recorded.get("device_kind"),
            kind,
        )
    else:
        log.info(
            "creating the demo model repository %s/ (%d x %s at %dx%d)",
            root,
            DEMO_COPIES,
            DEMO_ARCH,
            DEMO_RESOLUTION,
            DEMO_RESOLUTION,
        )
    _write_builtin(root)
    made = _choose(root, device, threads, forms)
    _install(root, made.choice, made.config, made.file)
    log.info("demo repository %s/: %s", root, made.choice.describe())
    return made.choice


def _write_builtin(root: Path) -> None:
    from clockwork.models.create import create_repository

    create_repository(
        root,
        DEMO_ARCH,
        DEMO_COPIES,
        seed=DEMO_SEED,
        params={"resolution": DEMO_RESOLUTION},
        batch_sizes=DEMO_BATCH_SIZES,
        overwrite=True,
    )


@dataclass(frozen=True, slots=True)
class _Made:
    """The choice, and (for a model file) the export and the config its import gave."""

    choice: FormChoice
    config: ModelConfig | None = None
    file: Path | None = None


def choose_form(
    root: Path, device: str, *, threads: int = 1, forms: Sequence[ModelFormat] = DEFAULT_FORMS
) -> FormChoice:
    """Export the first demo model to each of ``forms`` and time each on ``device``; the
    exports are left in ``root/_demo/`` (one made before is reused)."""
    return _choose(root, device, threads, forms).choice


def _choose(root: Path, device: str, threads: int, forms: Sequence[ModelFormat]) -> _Made:
    from clockwork.worker.backends.torch_backend import default_kind

    t0 = time.perf_counter()
    kind = default_kind(device).name
    skipped: dict[str, str] = {}
    candidates = [f for f in forms if f is not ModelFormat.BUILTIN]
    if ModelFormat.ONNX in candidates:
        why = _onnx_unavailable(device)
        if why:
            skipped[ModelFormat.ONNX.value] = why
            candidates.remove(ModelFormat.ONNX)
    files = _export(root, candidates, skipped) if candidates else {}
    if not files:
        elapsed = time.perf_counter() - t0
        return _Made(FormChoice(device, kind, ModelFormat.BUILTIN, {}, "", skipped, elapsed))
    try:
        median_ms, clock, configs = _time_forms(root, files, device, threads)
    except Exception as e:  # the demo must start: the built-in form runs wherever torch does
        reason = f"timing failed: {str(e).splitlines()[0][:200]}" if str(e) else repr(e)
        skipped.update({fmt.value: reason for fmt in files})
        elapsed = time.perf_counter() - t0
        return _Made(FormChoice(device, kind, ModelFormat.BUILTIN, {}, "", skipped, elapsed))
    chosen = ModelFormat.parse(min(median_ms, key=lambda f: median_ms[f]))
    choice = FormChoice(device, kind, chosen, median_ms, clock, skipped, time.perf_counter() - t0)
    return _Made(choice, configs.get(chosen), files.get(chosen))


def _onnx_unavailable(device: str) -> str:
    try:
        import onnx  # noqa: F401
        import onnxruntime as ort
    except ImportError as e:
        return f"{e.name} is not installed (pip install 'clockwork[torch]')"
    import torch

    from clockwork.core.errors import ConfigurationError
    from clockwork.worker.backends.onnx_program import onnx_providers

    try:
        onnx_providers(torch.device(device), ort.get_available_providers())
    except ConfigurationError as e:
        return str(e)
    return ""


def _export(
    root: Path, forms: Sequence[ModelFormat], skipped: dict[str, str]
) -> dict[ModelFormat, Path]:
    """The first demo model as a file of each of ``forms`` in ``root/_demo/``; a form whose
    export fails goes to ``skipped``."""
    from clockwork.models.model_export import example_inputs, export_onnx, export_pt2
    from clockwork.models.repository import ModelRepository

    repo = ModelRepository(root)
    name = model_names()[0]
    config = repo.load_config(name)
    module = repo.build_module(name, max(config.versions), copy=True)
    example = example_inputs(config.inputs, min(2, config.max_batch_size))
    stem = f"{DEMO_ARCH}-{DEMO_RESOLUTION}-seed{DEMO_SEED}"
    files: dict[ModelFormat, Path] = {}
    for fmt in forms:
        path = root / FORMS_DIR / f"{stem}{fmt.suffix}"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            # the exporters want the suffix: the temporary name keeps it
            partial = path.with_name(f"{stem}.partial{fmt.suffix}")
            try:
                t0 = time.perf_counter()
                if fmt is ModelFormat.ONNX:
                    names = [t.name for t in config.inputs], [t.name for t in config.outputs]
                    export_onnx(module, example, *names, partial)
                else:
                    export_pt2(module, example, config.max_batch_size, partial)
                os.replace(partial, path)
                log.info("exported %s in %.1f s", path, time.perf_counter() - t0)
            except Exception as e:
                partial.unlink(missing_ok=True)
                skipped[fmt.value] = f"export failed: {str(e).splitlines()[0][:200]}"
                continue
        files[fmt] = path
    return files


def _time_forms(
    root: Path, files: dict[ModelFormat, Path], device: str, threads: int
) -> tuple[dict[str, float], str, dict[ModelFormat, ModelConfig]]:
    """Median batch-1 time of each form on ``device`` as the torch backend runs it."""
    import torch

    from clockwork.models.create import create_repository
    from clockwork.models.model_files import weights_sizes
    from clockwork.models.model_import import import_model
    from clockwork.models.packing import pack_into_pages
    from clockwork.models.repository import ModelRepository
    from clockwork.worker.backends.torch_backend import DEFAULT_PAGE_SIZE_BYTES, TorchBackend

    names = {ModelFormat.BUILTIN: model_names()[0]}
    configs: dict[ModelFormat, ModelConfig] = {}
    previous_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="forms-", dir=root / FORMS_DIR) as scratch:
        staging = Path(scratch)
        create_repository(
            staging,
            DEMO_ARCH,
            1,
            seed=DEMO_SEED,
            params={"resolution": DEMO_RESOLUTION},
            batch_sizes=DEMO_BATCH_SIZES,
        )
        for fmt, path in files.items():
            names[fmt] = f"demo-{fmt.value}"
            configs[fmt] = import_model(
                staging,
                path,
                names[fmt],
                max_batch_size=max(DEMO_BATCH_SIZES),
                names=_io_names(root),
            )
        repo = ModelRepository(staging)
        pages = sum(
            pack_into_pages(weights_sizes(repo, n), DEFAULT_PAGE_SIZE_BYTES).num_pages
            for n in names.values()
        )
        try:
            backend = TorchBackend(
                repo, device, threads=threads, models=list(names.values()), cache_pages=pages
            )
            if set(backend.models()) != set(names.values()):
                missing = sorted(set(names.values()) - set(backend.models()))
                raise InvalidInputError(f"the backend could not open {missing}")
            for name in names.values():
                backend.load(name)
            config = backend.config(names[ModelFormat.BUILTIN])
            rng = np.random.default_rng(0)
            request = {
                s.name: rng.standard_normal((*s.shape,), dtype=np.float32) for s in config.inputs
            }
            cpu_clock = backend.device.type == "cpu" and threads == 1
            samples: dict[str, list[int]] = {fmt.value: [] for fmt in names}
            for round_ in range(WARMUP_RUNS + TIMED_ROUNDS):
                for fmt, name in names.items():
                    t0 = time.thread_time_ns() if cpu_clock else time.perf_counter_ns()
                    times = backend.infer(name, 1, [request]).times
                    t1 = time.thread_time_ns() if cpu_clock else time.perf_counter_ns()
                    if round_ >= WARMUP_RUNS:
                        wall = times.input_copy_ns + times.exec_ns + times.output_copy_ns
                        samples[fmt.value].append(t1 - t0 if cpu_clock else wall)
        finally:
            torch.set_num_threads(previous_threads)
    clock = "thread CPU time" if cpu_clock else "time (input copy + execution + output copy)"
    median_ms = {f: statistics.median(v) / 1e6 for f, v in samples.items()}
    return median_ms, clock, configs


def _io_names(root: Path) -> tuple[list[str], list[str]]:
    from clockwork.models.repository import ModelRepository

    config = ModelRepository(root).load_config(model_names()[0])
    return [t.name for t in config.inputs], [t.name for t in config.outputs]


def _install(root: Path, choice: FormChoice, chosen: ModelConfig | None, file: Path | None) -> None:
    """Make the demo models take the chosen form (the built-in one is written already): each
    version file links to the one export, each config is the imported candidate's under the
    model's name. Then record the choice."""
    from clockwork.models.create import write_text_atomic
    from clockwork.models.triton_config import PBTXT_FILE, write_triton_config

    if chosen is not None and file is not None:
        for name in model_names():
            model_dir = root / name
            shutil.rmtree(model_dir)
            version_dir = model_dir / str(max(chosen.versions))
            version_dir.mkdir(parents=True)
            assert chosen.model_filename is not None
            _link(file, version_dir / chosen.model_filename)
            write_text_atomic(
                model_dir / PBTXT_FILE, write_triton_config(replace(chosen, name=name))
            )
    write_text_atomic(root / FORMS_DIR / CHOICE_FILE, json.dumps(choice.to_json(), indent=2) + "\n")


def _link(target: Path, link: Path) -> None:
    """``link`` -> ``target`` (a relative symbolic link; a copy where links cannot be made)."""
    try:
        link.symlink_to(os.path.relpath(target, link.parent))
    except OSError:
        shutil.copyfile(target, link)
