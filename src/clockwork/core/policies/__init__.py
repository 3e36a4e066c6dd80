"""Scheduling policies behind the ``Scheduler`` interface, chosen by name."""

from __future__ import annotations

from collections.abc import Callable

from clockwork.core.errors import ConfigurationError
from clockwork.core.policies.base import PolicyBase
from clockwork.core.policies.clockwork import ClockworkConfig, ClockworkPolicy
from clockwork.core.policies.reactive import ReactiveConfig, ReactivePolicy

POLICIES: dict[str, Callable[[], PolicyBase]] = {
    "clockwork": lambda: ClockworkPolicy(ClockworkConfig()),
    "reactive": lambda: ReactivePolicy(ReactiveConfig()),
}


def make_policy(name: str) -> PolicyBase:
    try:
        return POLICIES[name]()
    except KeyError:
        raise ConfigurationError(
            f"unknown policy {name!r}; choose one of {', '.join(sorted(POLICIES))}"
        ) from None


__all__ = ["POLICIES", "ClockworkConfig", "ClockworkPolicy", "PolicyBase", "ReactiveConfig",
           "ReactivePolicy", "make_policy"]
