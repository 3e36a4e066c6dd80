"""``--loop-priority``: the CPU priority of the controller's timed loop
(``clockwork.service.loop_priority``), for ``serve`` and ``controller``."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from clockwork.core.errors import ConfigurationError

if TYPE_CHECKING:
    from clockwork.service.loop_priority import PriorityOutcome

log = logging.getLogger("clockwork.cli")


def add_loop_priority_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--loop-priority",
        # spelled out: importing clockwork.service here would slow every command's start
        choices=["auto", "realtime", "normal"],
        default="auto",
        help="CPU priority of the controller's timed loop: 'auto' (the default) runs it "
        "real-time (SCHED_FIFO) where the process may (root or CAP_SYS_NICE), so that busy "
        "cores never make it late, and normal elsewhere; 'realtime' fails where it may not; "
        "'normal' leaves it alone",
    )


def apply_loop_priority(args: argparse.Namespace) -> PriorityOutcome:
    """Raise the calling thread's priority as ``--loop-priority`` says, and log the outcome.
    Call it on the loop's thread, before the loop starts other threads."""
    from clockwork.service.loop_priority import LoopPriority, LoopPriorityError, raise_loop_priority

    try:
        outcome = raise_loop_priority(LoopPriority(args.loop_priority))
    except LoopPriorityError as e:
        raise ConfigurationError(str(e)) from e
    log.info("timed loop: %s", outcome.detail)
    return outcome
