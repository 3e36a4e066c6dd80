"""Scheduling policies behind the ``Scheduler`` interface, chosen by name."""

from __future__ import annotations

from collections.abc import Callable

from clockwork.core.errors import ConfigurationError
from clockwork.core.estimator import EstimatorConfig
from clockwork.core.policies.base import PolicyBase
from clockwork.core.policies.clockwork import ClockworkConfig, ClockworkPolicy
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
) -> PolicyBase:
    """The named policy with its defaults; a serving process warms its cache at start
    (``ClockworkConfig.warm_start``; the reactive policy loads only on a miss), refuses
    at arrival what its backlog cannot serve in time (``backlog_admission``) and admits by
    the probability of meeting the deadline (``EstimatorConfig.level``)."""
    if name == "clockwork" and (warm_start or warm_first or backlog_admission or admission_level):
        try:
            estimator = EstimatorConfig(level=admission_level)
        except ValueError as e:
            raise ConfigurationError(str(e)) from None
        return ClockworkPolicy(
            ClockworkConfig(
                warm_start=warm_start,
                warm_first=warm_first,
                backlog_admission=backlog_admission,
                estimator=estimator,
            )
        )
    try:
        return POLICIES[name]()
    except KeyError:
        raise ConfigurationError(
            f"unknown policy {name!r}; choose one of {', '.join(sorted(POLICIES))}"
        ) from None


__all__ = [
    "POLICIES",
    "POLICY_HELP",
    "ClockworkConfig",
    "ClockworkPolicy",
    "PolicyBase",
    "ReactiveConfig",
    "ReactivePolicy",
    "make_policy",
]
