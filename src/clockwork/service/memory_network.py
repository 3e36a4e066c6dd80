"""Workers reachable without sockets: a ``Connector`` for the controller whose connections are
in-memory pairs, each served by an in-process ``WorkerService``.

Tests use it to drive a controller and its workers in one event loop, without ports, and to
take a worker off the network (``unplug``: its connection ends, new connects are refused) and
back (``plug``).
"""

from __future__ import annotations

from collections.abc import Callable

from clockwork.core.clock_sync import ClockSync
from clockwork.service.worker_links import LinkConnection
from clockwork.service.worker_service import WorkerService
from clockwork.transport.memory import MemoryConnection, memory_pair


class MemoryNetwork:
    """Addresses -> in-process workers; ``connect`` is a ``Connector``."""

    def __init__(self) -> None:
        self._workers: dict[tuple[str, int], WorkerService] = {}
        self._open: dict[tuple[str, int], list[MemoryConnection]] = {}

    def plug(self, host: str, port: int, worker: WorkerService) -> None:
        self._workers[(host, port)] = worker

    def unplug(self, host: str, port: int) -> None:
        """Refuse new connections to ``host:port`` and close the open ones (both ends see
        the peer gone, as after a cable pull that the kernel noticed)."""
        self._workers.pop((host, port), None)
        for conn in self._open.pop((host, port), []):
            conn.abort("unplugged")

    async def connect(
        self, host: str, port: int, clock_ns: Callable[[], int], clock_sync: ClockSync
    ) -> LinkConnection:
        worker = self._workers.get((host, port))
        if worker is None:
            raise ConnectionRefusedError(f"nothing listens on {host}:{port}")
        ours, theirs = memory_pair(
            (f"to {host}:{port}", f"from controller to {host}:{port}"),
            clock_ns=(clock_ns, worker.clock_ns),
            clock_sync=(clock_sync, ClockSync()),
        )
        self._open.setdefault((host, port), []).append(ours)
        worker.accept(theirs)
        return ours
