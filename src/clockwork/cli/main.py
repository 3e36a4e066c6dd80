"""``clockwork`` entry point: one subcommand per module, each exposing ``register(subparsers)``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from clockwork.core.errors import ClockworkError

# Each module registers its subcommand and sets ``func`` (argparse.Namespace -> exit code).
_COMMAND_MODULES = (
    "clockwork.cli.sim_cmd",
    "clockwork.cli.models_cmd",
    "clockwork.cli.profile_cmd",
    "clockwork.cli.worker_cmd",
    "clockwork.cli.controller_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="clockwork", description="A predictable multi-tenant DNN model server."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue  # a subcommand not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ClockworkError as e:
        print(f"clockwork {args.command}: error: {e}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
