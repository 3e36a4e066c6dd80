"""The policy options the serving commands share (``clockwork serve``, ``clockwork
controller``) and the simulator's, and the policies they make (through ``make_policy``)."""

from __future__ import annotations

import argparse

from clockwork.core.errors import ConfigurationError
from clockwork.core.policies import PolicyBase, make_policy
from clockwork.core.units import ms_to_ns
from clockwork.service.recent_models import warm_order

#: chosen by measurement (BENCHMARKS.md section 15)
DEFAULT_ADMISSION_LEVEL = 0.9


def add_warm_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--warm",
        default="",
        metavar="MODEL,...",
        help="models to load first at start; then (serve) the models asked for most recently "
        "before the last shutdown, then the others in name order, while the devices have "
        "free pages (nothing is evicted for them)",
    )
    p.add_argument(
        "--no-warm", action="store_true", help="load models only when requests ask for them"
    )
    p.add_argument(
        "--admission-level",
        type=float,
        default=DEFAULT_ADMISSION_LEVEL,
        metavar="P",
        help=_ADMISSION_LEVEL_HELP,
    )
    add_per_device_arguments(p, serving=True)


_ADMISSION_LEVEL_HELP = (
    "admit a request (and choose its batch) when it meets its deadline with at least this "
    "probability, from the spread of the model's recent run times; 0 uses the paper's estimate "
    "instead (the slowest of the last 10 runs)"
)


def add_as_served_arguments(p: argparse._ActionsContainer) -> None:
    """The simulator's ``--as-served`` and ``--admission-level``: its Clockwork policy configured
    as a serving command configures it, so that a simulated run predicts a real server."""
    p.add_argument(
        "--as-served",
        action="store_true",
        help="clockwork: configure the policy as `clockwork serve` does, to predict a real "
        "server: a warm start (models loaded into free pages at start), refusal at arrival of "
        "what the backlog cannot serve in time, admission by --admission-level, per-device "
        "estimates and the serving horizon (default: the paper's policy)",
    )
    p.add_argument(
        "--admission-level",
        type=float,
        default=None,
        metavar="P",
        help=_ADMISSION_LEVEL_HELP
        + f" (default: {DEFAULT_ADMISSION_LEVEL:g} with --as-served, as `serve`; else 0)",
    )


def add_per_device_arguments(p: argparse._ActionsContainer, serving: bool) -> None:
    """``--no-per-device-estimates`` for a serving command (on by default), or
    ``--per-device-estimates`` for the simulator (off: the paper's estimates, shared by the
    devices of a kind); ``per_device_from_args`` reads either. (Two switches that store True,
    not one storing False: a ``--config`` file sets a switch's destination to the key's value,
    so ``no-per-device-estimates = true`` must mean what the flag means.)"""
    if serving:
        p.add_argument(
            "--no-per-device-estimates",
            action="store_true",
            help="keep one execution-time estimate per model and device kind, shared by the "
            "devices of that kind (default: one per model and device, so a device on a slower "
            "or noisier host neither slows the estimates of the others nor hides behind them)",
        )
    else:
        p.add_argument(
            "--per-device-estimates",
            action="store_true",
            help="keep execution-time estimates per device, as a serving process does "
            "(default: per device kind, shared by the devices of a kind, as in the paper)",
        )


def per_device_from_args(args: argparse.Namespace) -> bool:
    """Whether the switches of ``add_per_device_arguments`` ask for per-device estimates."""
    if hasattr(args, "no_per_device_estimates"):
        return not args.no_per_device_estimates
    return bool(getattr(args, "per_device_estimates", False))


def policy_from_args(name: str, args: argparse.Namespace) -> PolicyBase:
    """The policy ``name`` with the simulator's options (``--schedule-ahead-ms``,
    ``--per-device-estimates``, and where the command has them ``--as-served`` and
    ``--admission-level``)."""
    as_served = bool(getattr(args, "as_served", False))
    level = getattr(args, "admission_level", None)
    if level is None:
        level = DEFAULT_ADMISSION_LEVEL if as_served else 0.0
    ahead_ms = args.schedule_ahead_ms  # None: the policy's own (serving) horizon
    return make_policy(
        name,
        warm_start=as_served,
        backlog_admission=as_served,
        admission_level=level,
        schedule_ahead_ns=None if ahead_ms is None else ms_to_ns(ahead_ms),
        per_device_estimates=as_served or per_device_from_args(args),
    )


def policy_from_warm_args(args: argparse.Namespace, recent: tuple[str, ...] = ()) -> PolicyBase:
    """The serving policy; ``recent``: the models asked for most recently before a restart,
    warmed right after ``--warm``'s."""
    first = tuple(n.strip() for n in args.warm.split(",") if n.strip())
    if args.no_warm and first:
        raise ConfigurationError("--warm and --no-warm contradict each other")
    return make_policy(
        args.policy,
        warm_start=not args.no_warm,
        warm_first=warm_order(first, recent),
        backlog_admission=True,
        admission_level=args.admission_level,
        per_device_estimates=per_device_from_args(args),
    )
