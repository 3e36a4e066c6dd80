"""How fast and how predictable are the built-in models on this CPU, through the real backend?

For each built-in architecture at a small and a standard input size, with one torch thread
(the torch backend's default), through ``TorchBackend`` (paged weights cache, functional_call):

- execution time per batch size: p50, p99, max, spread p99/p50 (time = input copy + execution
  + output copy, as the worker's inference executor is busy for it);
- load time (host memory into cache pages): p50, p99, max;
- how well Clockwork's estimator predicts the next run: rolling, estimate = the p99 of the last
  10 runs (nearest rank, i.e. their max); the fraction of next runs above the estimate, and by
  how much they exceed it (p50 and p99 of the excess, in % of the estimate, over those runs).

The number of timed runs per batch size is set by a time budget (``--budget-s``) between
``--min-runs`` and ``--max-runs``; ``--quick`` shrinks everything (about 2 minutes on 2 cores;
the full run about 5).

usage: .venv/bin/python bench/models_cpu.py --out DIR [--quick] [--models resnet18,...]
Writes DIR/models_cpu.json (every figure, and every run's time) and DIR/models_cpu.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clockwork.models.create import create_repository
from clockwork.models.repository import ModelRepository
from clockwork.worker.backends.torch_backend import TorchBackend
from clockwork.worker.profiler import device_description, percentile_ns, sample_inputs

WINDOW = 10  # Clockwork's estimator: p99 of the last 10 measurements


@dataclass(frozen=True)
class Case:
    arch: str
    label: str  # the input size in words
    params: dict[str, Any]
    batch_sizes: tuple[int, ...]
    quick_batch_sizes: tuple[int, ...]


ALL = (1, 2, 4, 8, 16)
CASES = (
    Case("resnet18", "64x64", {"resolution": 64}, ALL, ALL),
    Case("resnet18", "224x224", {"resolution": 224}, ALL, (1, 2, 4, 8)),
    Case("resnet50", "64x64", {"resolution": 64}, ALL, ALL),
    # batch 16 at 224 takes ~3 s a run on one slow core: left out to keep the run short
    Case("resnet50", "224x224", {"resolution": 224}, (1, 2, 4, 8), (1, 2, 4)),
    Case("mobilenet_v2", "64x64", {"resolution": 64}, ALL, ALL),
    Case("mobilenet_v2", "224x224", {"resolution": 224}, ALL, ALL),
    Case("transformer", "seq 32", {"seq_len": 32}, ALL, ALL),
    Case("transformer", "seq 128", {"seq_len": 128}, ALL, ALL),
)


@dataclass
class Settings:
    budget_s: float
    min_runs: int
    max_runs: int
    warmup: int
    loads: int


@dataclass
class Row:
    arch: str
    label: str
    batch: int
    times_ns: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        t = self.times_ns
        p50, p99 = percentile_ns(t, 50), percentile_ns(t, 99)
        return {
            "model": self.arch,
            "input": self.label,
            "batch": self.batch,
            "runs": len(t),
            "p50_ns": p50,
            "p99_ns": p99,
            "max_ns": max(t),
            "spread_p99_p50": p99 / p50,
            **rolling_prediction(t),
        }


def rolling_prediction(times: list[int], window: int = WINDOW) -> dict[str, Any]:
    """Estimate each run (from run ``window`` on) by the max of the ``window`` before it."""
    excess: list[float] = []
    predicted = 0
    for i in range(window, len(times)):
        estimate = max(times[i - window : i])
        predicted += 1
        if times[i] > estimate:
            excess.append(100.0 * (times[i] / estimate - 1.0))
    if not predicted:
        return {
            "predicted": 0,
            "exceed_fraction": None,
            "excess_p50_pct": None,
            "excess_p99_pct": None,
        }
    ordered = sorted(excess)

    def pct(q: float) -> float | None:
        if not ordered:
            return None
        return ordered[max(1, int(np.ceil(q / 100 * len(ordered)))) - 1]

    return {
        "predicted": predicted,
        "exceed_fraction": len(excess) / predicted,
        "excess_p50_pct": pct(50),
        "excess_p99_pct": pct(99),
    }


def measure_case(
    case: Case, root: Path, settings: Settings, quick: bool, log: Any
) -> tuple[list[Row], dict[str, Any]]:
    name_prefix = f"{case.arch}-{case.label.replace(' ', '').replace('x', '_')}"
    sizes = case.quick_batch_sizes if quick else case.batch_sizes
    t0 = time.perf_counter()
    [name] = create_repository(
        root, case.arch, 1, seed=0, params=case.params, name_prefix=name_prefix, batch_sizes=sizes
    )
    repo = ModelRepository(root)
    backend = TorchBackend(repo, "cpu", threads=1, models=[name])
    config = backend.config(name)
    plan = backend.plan(name)
    log(
        f"{case.arch} {case.label}: created in {time.perf_counter() - t0:.1f} s, "
        f"{plan.total_bytes / 1e6:.1f} MB in {plan.num_pages} pages"
    )

    backend.load(name)
    backend.evict(name)
    loads = []
    for i in range(settings.loads):
        loads.append(backend.load(name).exec_ns)
        if i + 1 < settings.loads:
            backend.evict(name)
    load = {
        "model": case.arch,
        "input": case.label,
        "weights_bytes": plan.total_bytes,
        "pages": plan.num_pages,
        "runs": len(loads),
        "p50_ns": percentile_ns(loads, 50),
        "p99_ns": percentile_ns(loads, 99),
        "max_ns": max(loads),
        "times_ns": loads,
    }

    rows = []
    rng = np.random.default_rng(0)
    for b in sizes:
        requests = sample_inputs(config, b, rng)
        first = time.perf_counter()
        for _ in range(max(1, settings.warmup)):
            backend.infer(name, b, requests)
        one = (time.perf_counter() - first) / max(1, settings.warmup)
        runs = int(min(settings.max_runs, max(settings.min_runs, settings.budget_s / one)))
        row = Row(case.arch, case.label, b)
        for _ in range(runs):
            t = backend.infer(name, b, requests).times
            row.times_ns.append(t.input_copy_ns + t.exec_ns + t.output_copy_ns)
        s = row.summary()
        log(
            f"  batch {b:>2}: {runs:>3} runs, p50 {s['p50_ns'] / 1e6:8.2f} ms, "
            f"p99 {s['p99_ns'] / 1e6:8.2f} ms"
        )
        rows.append(row)
    backend.evict(name)
    return rows, load


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.2f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def markdown(
    summaries: list[dict[str, Any]], loads: list[dict[str, Any]], header: dict[str, Any]
) -> str:
    lines = [
        "# Built-in models on this CPU through the torch backend",
        "",
        f"- where: {header['where']}",
        f"- command: `{header['command']}`",
        f"- settings: {header['settings']}",
        "- time of a run = input copy + execution + output copy; percentiles nearest rank",
        f"- prediction: estimate = p99 (= max) of the previous {WINDOW} runs; 'next > est' is "
        "the share of runs above their estimate, 'excess' how far above (p50/p99 over those)",
        "",
        "| model | input | batch | runs | p50 ms | p99 ms | max ms | p99/p50 | next > est "
        "| excess p50 | excess p99 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        frac = s["exceed_fraction"]
        lines.append(
            f"| {s['model']} | {s['input']} | {s['batch']} | {s['runs']} | {_ms(s['p50_ns'])} "
            f"| {_ms(s['p99_ns'])} | {_ms(s['max_ns'])} | {s['spread_p99_p50']:.2f} "
            f"| {_pct(None if frac is None else 100 * frac)} "
            f"| {_pct(s['excess_p50_pct'])} | {_pct(s['excess_p99_pct'])} |"
        )
    lines += [
        "",
        "| model | input | weights MB | pages (16 MiB) | loads | load p50 ms | load p99 ms "
        "| load max ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for ld in loads:
        lines.append(
            f"| {ld['model']} | {ld['input']} | {ld['weights_bytes'] / 1e6:.1f} | {ld['pages']} "
            f"| {ld['runs']} | {_ms(ld['p50_ns'])} | {_ms(ld['p99_ns'])} | {_ms(ld['max_ns'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the results")
    parser.add_argument("--quick", action="store_true", help="fewer runs and batch sizes")
    parser.add_argument("--models", default=None, help="only these architectures (a,b)")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="seconds of timed runs per batch size (default 4; quick 1.2)",
    )
    parser.add_argument("--min-runs", type=int, default=None, help="default 25; quick 15")
    parser.add_argument("--max-runs", type=int, default=None, help="default 300; quick 100")
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    settings = Settings(
        budget_s=args.budget_s if args.budget_s is not None else (1.2 if quick else 4.0),
        min_runs=args.min_runs if args.min_runs is not None else (15 if quick else 25),
        max_runs=args.max_runs if args.max_runs is not None else (100 if quick else 300),
        warmup=2,
        loads=5 if quick else 10,
    )
    archs = set(args.models.split(",")) if args.models else None
    cases = [c for c in CASES if archs is None or c.arch in archs]
    if not cases:
        parser.error(f"no architecture among {sorted({c.arch for c in CASES})}")

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    started = time.perf_counter()
    rows: list[Row] = []
    loads: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="clockwork-bench-") as tmp:
        for case in cases:
            case_rows, load = measure_case(case, Path(tmp) / "repo", settings, quick, log)
            rows += case_rows
            loads.append(load)
    summaries = [r.summary() for r in rows]
    header = {
        "where": device_description("cpu", torch.get_num_threads()),
        "command": " ".join(["bench/models_cpu.py", *(argv if argv is not None else sys.argv[1:])]),
        "settings": vars(settings) | {"quick": quick},
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    data = {
        **header,
        "exec": [s | {"times_ns": r.times_ns} for s, r in zip(summaries, rows, strict=True)],
        "load": loads,
    }
    (args.out / "models_cpu.json").write_text(json.dumps(data, indent=1) + "\n")
    table = markdown(summaries, loads, header)
    (args.out / "models_cpu.md").write_text(table)
    print(table)
    log(f"done in {header['elapsed_s']} s; wrote {args.out}/models_cpu.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
