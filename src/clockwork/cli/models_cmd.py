"""``clockwork models``: create model repositories, import and export model files, and list
what a repository holds."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from clockwork.core.errors import InvalidInputError
from clockwork.models.architectures import ARCHITECTURES
from clockwork.models.architectures.spec import ParamValue
from clockwork.models.config import ModelConfig
from clockwork.models.create import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_COPIES,
    DEFAULT_SEED,
    SHARED_DIR,
    create_repository,
)
from clockwork.models.repository import ModelRepository
from clockwork.models.tensors import TensorSpec


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "models", help="create and inspect model repositories", description=__doc__
    )
    sub = parser.add_subparsers(dest="models_command", required=True, help="what to do")
    _register_create(sub)
    _register_list(sub)
    _register_archs(sub)
    _register_import(sub)
    _register_export(sub)


def _register_create(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    archs = ", ".join(
        f"{name} ({_params_text(spec.default_params)})" for name, spec in ARCHITECTURES.items()
    )
    p = sub.add_parser(
        "create",
        help="write N copies of a built-in architecture with seeded weights",
        description=(
            "Write models DIR/<prefix>-0000.. with seeded random weights. Architectures and "
            f"their default parameters: {archs}."
        ),
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="repository directory (created if absent)")
    p.add_argument("--arch", required=True, choices=sorted(ARCHITECTURES), help="architecture")
    p.add_argument(
        "--copies",
        type=int,
        default=DEFAULT_COPIES,
        help=f"number of distinct models to write (default {DEFAULT_COPIES})",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"weights seed; copy i uses seed+i without shared weights (default {DEFAULT_SEED})",
    )
    shape = p.add_mutually_exclusive_group()
    shape.add_argument(
        "--resolution",
        type=int,
        help="image side in pixels, image architectures (default "
        f"{ARCHITECTURES['resnet50'].default_params['resolution']})",
    )
    shape.add_argument(
        "--seq-len",
        type=int,
        help="tokens per input, transformer (default "
        f"{ARCHITECTURES['transformer'].default_params['seq_len']})",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other architecture parameter, e.g. num_classes=10 (repeatable)",
    )
    p.add_argument(
        "--batch-sizes",
        type=_batch_sizes,
        default=DEFAULT_BATCH_SIZES,
        help="supported batch sizes, comma separated; the largest is max_batch_size "
        f"(default {','.join(map(str, DEFAULT_BATCH_SIZES))})",
    )
    p.add_argument(
        "--slo-ms",
        type=float,
        default=None,
        help="the models' default SLO in ms (default: none, the server's applies)",
    )
    p.add_argument("--name-prefix", default=None, help="model name prefix (default: the arch)")
    p.add_argument(
        "--no-share-weights",
        dest="share_weights",
        action="store_false",
        help=f"give each copy its own weights file (default: one shared file in {SHARED_DIR}/)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace model directories that exist")
    p.set_defaults(func=_create)


def _register_list(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "list",
        help="validate a repository and list its models",
        description="List the models of DIR; errors of bad models go to stderr (exit code 1).",
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="repository directory")
    p.set_defaults(func=_list)


def _register_archs(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("archs", help="list the built-in architectures and their parameters")
    p.set_defaults(func=_archs)


def _register_import(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "import",
        help="add a .pt2 (torch.export) or .onnx file to a repository",
        description=(
            "Check FILE (safe loading only: TorchScript and pickled files are refused), run it "
            "once at batch 1 and at the largest batch, and write REPO/NAME/1/model.pt2 (or "
            ".onnx, with its external data) and REPO/NAME/config.pbtxt (Triton's layout), its "
            "inputs and outputs taken from the file. The first dimension of every tensor must "
            "be the batch, exported as dynamic."
        ),
    )
    p.add_argument("repo", type=Path, metavar="REPO", help="repository directory")
    p.add_argument("file", type=Path, metavar="FILE", help="a .pt2 or .onnx model file")
    p.add_argument("--name", required=True, help="the served model's name")
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=None,
        help="largest batch (default 16, or 1 if the file fixes its batch at 1); the server "
        "runs batches of 1, 2, 4, ... up to it",
    )
    p.add_argument("--version", type=int, default=1, help="version directory (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace the model if it exists")
    p.set_defaults(func=_import)


def _register_export(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "export",
        help="write a built-in model as .pt2 and .onnx files",
        description=(
            "Export model NAME of REPO (a built-in architecture) with its weights to "
            "OUT/NAME.pt2 (torch.export) and OUT/NAME.onnx, the batch dimension dynamic up to "
            "its max_batch_size. With --into, also import them into that repository as "
            "NAME-pt2 and NAME-onnx (same inputs and outputs as NAME: the same network in "
            "three forms)."
        ),
    )
    p.add_argument("repo", type=Path, metavar="REPO", help="repository directory")
    p.add_argument("name", metavar="NAME", help="a built-in model of REPO")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to write")
    p.add_argument(
        "--formats",
        default="pt2,onnx",
        help="comma separated, of pt2 and onnx (default pt2,onnx)",
    )
    p.add_argument("--into", type=Path, default=None, metavar="REPO2", help="import them here")
    p.add_argument("--overwrite", action="store_true", help="replace files and models")
    p.set_defaults(func=_export)


def _import(args: argparse.Namespace) -> int:
    from clockwork.models.model_import import import_model

    config = import_model(
        args.repo,
        args.file,
        args.name,
        max_batch_size=args.max_batch_size,
        version=args.version,
        overwrite=args.overwrite,
    )
    print(f"imported {args.file} into {args.repo} as {config.name} ({config.format.value}):")
    print(_row(config)[3] + " -> " + _tensors_text(config.outputs))
    print(f"batch sizes {','.join(map(str, config.batch_sizes))}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from clockwork.models.formats import ModelFormat
    from clockwork.models.model_export import export_model

    formats = []
    for part in args.formats.split(","):
        fmt = ModelFormat.parse(part.strip())
        if fmt is ModelFormat.BUILTIN:
            raise InvalidInputError("--formats takes pt2 and onnx")
        formats.append(fmt)
    written = export_model(
        ModelRepository(args.repo),
        args.name,
        args.out,
        tuple(formats),
        into=args.into,
        overwrite=args.overwrite,
    )
    for path in written:
        print(f"wrote {path}")
    if args.into is not None:
        print(f"imported into {args.into}: {', '.join(f'{args.name}-{f.value}' for f in formats)}")
    return 0


def _create(args: argparse.Namespace) -> int:
    params = _parse_params(args.param)
    for key, value in (("resolution", args.resolution), ("seq_len", args.seq_len)):
        if value is None:
            continue
        if key in params:
            raise InvalidInputError(f"{key} given twice (as an option and as --param)")
        params[key] = value
    names = create_repository(
        args.dir,
        args.arch,
        args.copies,
        args.seed,
        params=params,
        name_prefix=args.name_prefix,
        batch_sizes=args.batch_sizes,
        default_slo_ms=args.slo_ms,
        share_weights=args.share_weights,
        overwrite=args.overwrite,
    )
    shown = names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}"
    print(f"created {len(names)} model(s) in {args.dir}: {shown}")
    return 0


def _list(args: argparse.Namespace) -> int:
    repo = ModelRepository(args.dir)
    configs = repo.scan()
    rows = [("NAME", "ARCH/FORMAT", "VERSIONS", "INPUTS", "BATCH SIZES", "SLO MS")]
    rows.extend(_row(c) for c in configs.values())
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for config in configs.values():
        for note in config.notes:
            print(f"note: {config.name}: {note}")
    errors = repo.scan_errors()
    # broken models are listed with the file and the problem (on stdout with the others, and
    # on stderr as errors)
    for error in errors:
        print(f"BROKEN  {error.model or error.path.name}  {error}")
        print(f"clockwork models list: {error}", file=sys.stderr)
    print(f"{len(configs)} model(s), {len(errors)} with errors")
    return 1 if errors else 0


def _archs(args: argparse.Namespace) -> int:
    for name, spec in ARCHITECTURES.items():
        print(f"{name}: {spec.description}")
        print(f"    parameters: {_params_text(spec.default_params)}")
    return 0


def _tensors_text(tensors: Sequence[TensorSpec]) -> str:
    return " ".join(f"{t.name}:{t.dtype}{list(t.shape)}".replace(" ", "") for t in tensors)


def _row(config: ModelConfig) -> tuple[str, str, str, str, str, str]:
    inputs = _tensors_text(config.inputs)
    slo = "-" if config.default_slo_ms is None else f"{config.default_slo_ms:g}"
    return (
        config.name,
        config.kind_text,
        ",".join(map(str, config.versions)),
        inputs,
        ",".join(map(str, config.batch_sizes)),
        slo,
    )


def _params_text(params: Mapping[str, ParamValue]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"batch sizes are comma-separated integers, got {text!r}"
        ) from None


def _parse_params(items: list[str]) -> dict[str, ParamValue]:
    """``KEY=VALUE`` pairs; VALUE is read as JSON (numbers, true/false) or else as a string."""
    params: dict[str, ParamValue] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"--param takes KEY=VALUE, got {item!r}")
        if key in params:
            raise InvalidInputError(f"--param {key} given twice")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if not isinstance(value, int | float | str | bool):
            raise InvalidInputError(f"--param {key}: {text!r} is not a number, bool or string")
        params[key] = value
    return params
