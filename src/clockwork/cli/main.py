"""``clockwork`` entry point: one subcommand per module, each exposing ``register(subparsers)``.

Only the module of the subcommand being run is imported (some pull in torch, which takes
seconds); the others appear in ``--help`` by name and summary.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from clockwork import __version__
from clockwork.cli.help_format import plain_help
from clockwork.core.errors import ClockworkError

# name -> (module that registers it and sets ``func``, one-line summary for --help)
_COMMANDS = {
    "serve": (
        "clockwork.cli.serve_cmd",
        "run the server: controller, OIP front door (HTTP/gRPC) and a local worker",
    ),
    "sim": ("clockwork.cli.sim_cmd", "simulate a cluster in virtual time and report on it"),
    "models": ("clockwork.cli.models_cmd", "create and inspect model repositories"),
    "profile": (
        "clockwork.cli.profile_cmd",
        "measure models with the torch backend and write their profiles",
    ),
    "worker": ("clockwork.cli.worker_cmd", "serve this machine's devices to a controller"),
    "controller": ("clockwork.cli.controller_cmd", "schedule requests onto running workers"),
    "bench-cluster": (
        "clockwork.cli.bench_cluster_cmd",
        "run a controller and emulated workers on this machine under a workload",
    ),
    "bench": ("clockwork.cli.bench_cmd", "drive an OIP server (HTTP/gRPC) with a workload, report"),
}


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clockwork", description="A predictable multi-tenant DNN model server."
    )
    parser.add_argument("--version", action="version", version=f"clockwork {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, summary) in _COMMANDS.items():
        if name == chosen:
            importlib.import_module(module).register(sub)
        else:
            sub.add_parser(name, help=summary)
    plain_help(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    try:
        code: int = args.func(args)
    except ClockworkError as e:
        print(f"clockwork {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C where a command has no clean stop of its own: a line, not a traceback
        print(f"clockwork {args.command}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
