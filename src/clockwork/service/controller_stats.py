"""The controller's counters, for status lines and tests."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from clockwork.core.requests import ResponseStatus


@dataclass
class ControllerStats:
    """Counters for status lines and tests."""

    submitted: int = 0
    # of the submitted, those refused before the scheduler took them (``refuse_early``)
    refused_early: int = 0
    responses: Counter[ResponseStatus] = field(default_factory=Counter)
    actions_sent: Counter[str] = field(default_factory=Counter)
    too_late_unsent: int = 0
    joins: int = 0
    losses: int = 0

    @property
    def answered(self) -> int:
        return sum(self.responses.values())

    @property
    def successes(self) -> int:
        return self.responses[ResponseStatus.SUCCESS]

    @property
    def attainment(self) -> float:
        """Successes per response (1.0 before any response)."""
        n = self.answered
        return self.successes / n if n else 1.0
