"""Process metrics for ``/metrics``: CPU time, memory, open files and start time of the server's
processes, under the names the Prometheus client libraries give them (``process_cpu_seconds_total``,
``process_resident_memory_bytes``, ``process_virtual_memory_bytes``, ``process_open_fds``,
``process_max_fds``, ``process_start_time_seconds``).

prometheus_client's ``ProcessCollector`` reads them from ``/proc`` (Linux; elsewhere there are
none). One server is several processes (the controller and its local worker), so each sample
carries a ``process`` label naming whose it is: ``controller`` always, and each process added
with ``watch`` while it runs. A restarted worker is read under its new pid with the same label; its
``process_start_time_seconds`` says it restarted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector

__all__ = ["CONTROLLER", "PROCESS_LABEL", "ProcessMetrics"]

PROCESS_LABEL = "process"
CONTROLLER = "controller"


def _self() -> str:
    return "self"


class ProcessMetrics:
    """A Prometheus collector of the ``process_*`` metrics of the controller (this process) and of
    the processes added with ``watch``, read at scrape time."""

    def __init__(self, proc: str = "/proc") -> None:
        self._proc = proc
        self._readers: dict[str, ProcessCollector] = {
            CONTROLLER: ProcessCollector(pid=_self, proc=proc, registry=None)
        }

    def watch(self, name: str, pid: Callable[[], int | None]) -> None:
        """Report the process whose pid ``pid()`` gives (None: none now) as ``process=name``."""
        if name in self._readers:
            raise ValueError(f"a process named {name!r} is already watched")

        def current() -> int | str:
            # no process now: a path that does not exist, so nothing is read for it
            found = pid()
            return "-" if found is None else found

        self._readers[name] = ProcessCollector(pid=current, proc=self._proc, registry=None)

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for name, reader in self._readers.items():
            for family in reader.collect():
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(
                        family.name, family.documentation, family.type
                    )
                for s in family.samples:
                    merged.add_sample(s.name, {**s.labels, PROCESS_LABEL: name}, s.value)
        yield from families.values()
