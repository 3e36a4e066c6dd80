"""The networked services: the worker service (a ``WorkerRuntime`` behind a TCP port) and the
controller service (an asyncio driver of the sans-IO scheduler that talks to workers).

See ``worker_service`` and ``controller_service`` for their protocols and rules.
"""

from clockwork.service.controller_service import (
    ControllerClosedError,
    ControllerService,
    ControllerStats,
)
from clockwork.service.worker_service import WorkerService

__all__ = ["ControllerClosedError", "ControllerService", "ControllerStats", "WorkerService"]
