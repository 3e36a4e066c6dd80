"""Scheduling policies behind the ``Scheduler`` interface, chosen by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from clockwork.core.errors import ConfigurationError
from clockwork.core.estimator import EstimatorConfig
from clockwork.core.policies.base import PolicyBase
from clockwork.core.policies.clockwork import (
    SIMULATED_ROOM_NS,
    SIMULATED_SCHEDULE_AHEAD_NS,
    ClockworkConfig,
    ClockworkPolicy,
    simulated_schedule_ahead_ns,
)
from clockwork.core.policies.reactive import ReactiveConfig, ReactivePolicy

POLICIES: dict[str, Callable[[], PolicyBase]] = {
    "clockwork": lambda: ClockworkPolicy(ClockworkConfig()),
    "reactive": lambda: ReactivePolicy(ReactiveConfig()),
}


#: what ``--policy`` says in every command's help
POLICY_HELP = (
    "scheduling policy: clockwork (plans every action ahead) or reactive (FIFO, loads on a miss)"
)


def make_policy(
    name: str,
    *,
    warm_start: bool = False,
    warm_first: tuple[str, ...] = (),
    backlog_admission: bool = False,
    admission_level: float = 0.0,
    schedule_ahead_ns: int | None = None,
    per_device_estimates: bool = False,
) -> PolicyBase:
    """The named policy: the one factory of every command. With no options it is the policy
    with its defaults (the paper's, for the simulator). A serving process warms its cache at
    start (``ClockworkConfig.warm_start``; the reactive policy loads only on a miss), refuses at
    arrival what its backlog cannot serve in time (``backlog_admission``) and admits by the
    probability of meeting the deadline (``EstimatorConfig.level``); ``schedule_ahead_ns``
    sets the Clockwork horizon (None: its default); ``per_device_estimates`` keeps estimates per
    device rather than per device kind (``EstimatorConfig.per_device_estimates``: a serving
    process's devices of one kind need not run alike). A bad name or value is a
    ``ConfigurationError`` naming it."""
    if name not in POLICIES:
        raise ConfigurationError(
            f"unknown policy {name!r}; choose one of {', '.join(sorted(POLICIES))}"
        )
    if name == "reactive" and per_device_estimates:
        return ReactivePolicy(ReactiveConfig(estimator=EstimatorConfig(per_device_estimates=True)))
    if name != "clockwork":
        return POLICIES[name]()
    try:
        config = ClockworkConfig(
            warm_start=warm_start,
            warm_first=warm_first,
            backlog_admission=backlog_admission,
            estimator=EstimatorConfig(
                level=admission_level, per_device_estimates=per_device_estimates
            ),
        )
        if schedule_ahead_ns is not None:
            config = replace(config, schedule_ahead_ns=schedule_ahead_ns)
    except ValueError as e:
        raise ConfigurationError(str(e)) from None
    return ClockworkPolicy(config)


__all__ = [
    "POLICIES",
    "POLICY_HELP",
    "SIMULATED_ROOM_NS",
    "SIMULATED_SCHEDULE_AHEAD_NS",
    "ClockworkConfig",
    "ClockworkPolicy",
    "PolicyBase",
    "ReactiveConfig",
    "ReactivePolicy",
    "make_policy",
    "simulated_schedule_ahead_ns",
]
