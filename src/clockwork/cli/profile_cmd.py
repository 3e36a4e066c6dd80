"""``clockwork profile``: measure a repository's models on this machine and write profiles."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clockwork.models.repository import ModelRepository
from clockwork.worker.profiler import (
    DEFAULT_LOADS,
    DEFAULT_RUNS,
    DEFAULT_WARMUP,
    profile_repository,
    profile_table,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "profile",
        help="measure models with the torch backend and write their profiles",
        description=(
            "Load and run each model of REPO on DEVICE with the real (torch) backend, whatever "
            "its form (a built-in architecture, a .pt2 program, an .onnx file run by ONNX "
            "Runtime), and write "
            "REPO/<model>/profile-<device kind>.json. exec_ns and load_ns are the 99th "
            "percentile of the timed runs; the p50/p99/max table is kept under 'extra'. Models "
            "with the same architecture, parameters and batch sizes, or the same model file, are "
            "measured once."
        ),
    )
    parser.add_argument("repo", type=Path, metavar="REPO", help="model repository directory")
    parser.add_argument("--device", default="cpu", help="cpu or cuda:N (default cpu)")
    parser.add_argument(
        "--runs",
        type=_positive,
        default=DEFAULT_RUNS,
        help=f"timed runs per batch size (default {DEFAULT_RUNS})",
    )
    parser.add_argument(
        "--warmup",
        type=_non_negative,
        default=DEFAULT_WARMUP,
        help=f"untimed runs per batch size first (default {DEFAULT_WARMUP})",
    )
    parser.add_argument(
        "--loads",
        type=_positive,
        default=DEFAULT_LOADS,
        help=f"timed load/evict cycles (default {DEFAULT_LOADS})",
    )
    parser.add_argument(
        "--models",
        type=_names,
        default=None,
        metavar="A,B",
        help="only these models, comma separated (default: all)",
    )
    parser.add_argument(
        "--threads",
        type=_positive,
        default=1,
        help="torch threads on the CPU (default 1: steadier than faster)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="write OUT/<model>/profile-<kind>.json instead of into REPO",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    repo = ModelRepository(args.repo)
    started: set[str] = set()

    def progress(model: str, batch: int | None, index: int) -> None:
        if model not in started:
            started.add(model)
            print(f"profiling {model} on {args.device} ...", file=sys.stderr, flush=True)

    results = profile_repository(
        repo,
        args.device,
        args.out,
        models=args.models,
        runs=args.runs,
        warmup=args.warmup,
        loads=args.loads,
        threads=args.threads,
        progress=progress,
    )
    if args.models is None:
        for error in repo.scan_errors():
            print(f"skipped a bad model: {error}", file=sys.stderr)
    for profile, path in results.values():
        print(profile_table(profile))
        print(f"  -> {path}")
        print()
    return 0


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected model names separated by commas")
    return names


def _positive(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
