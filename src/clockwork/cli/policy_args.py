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
        help="admit a request (and choose its batch) when it meets its deadline with at least "
        "this probability, from the spread of the model's recent run times; 0 uses the "
        "paper's estimate instead (the slowest of the last 10 runs)",
    )
    add_per_device_arguments(p, serving=True)


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
    ``--per-device-estimates``)."""
    return make_policy(
        name,
        schedule_ahead_ns=ms_to_ns(args.schedule_ahead_ms),
        per_device_estimates=per_device_from_args(args),
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
