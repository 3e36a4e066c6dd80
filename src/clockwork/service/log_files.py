"""Rotating request and action log files of a long-running controller.

Every ``rotate()`` swaps the telemetry's in-memory logs for empty ones and hands the full ones to
one writer thread, which writes ``requests-NNNNNN.parquet`` and ``actions-NNNNNN.parquet``. The
scheduling loop never waits for a disk: at most ``max_pending`` batches wait for the writer; while
that many are waiting a rotation is skipped and rows keep accumulating in memory until the next
one (the write rate is bounded by the writer, never by the loop). Only the newest ``keep_files``
pairs are kept on disk.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path

from clockwork.service.telemetry import ControllerTelemetry
from clockwork.telemetry.records import ActionLog, RequestLog

log = logging.getLogger("clockwork.service.logs")


class LogFiles:
    """See the module docstring. ``close()`` writes what is left and stops the writer."""

    def __init__(
        self,
        telemetry: ControllerTelemetry,
        directory: Path,
        keep_files: int = 100,
        max_pending: int = 2,
    ) -> None:
        if keep_files < 1 or max_pending < 1:
            raise ValueError("keep_files and max_pending must be >= 1")
        self.telemetry = telemetry
        self.directory = directory
        self.keep_files = keep_files
        directory.mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue[tuple[int, RequestLog, ActionLog] | None] = queue.Queue(
            maxsize=max_pending
        )
        self._index = 0
        self.written: list[Path] = []
        self.skipped = 0
        self._thread = threading.Thread(
            target=self._write_loop, name="clockwork-log-writer", daemon=True
        )
        self._thread.start()

    def rotate(self) -> bool:
        """Hand the rows logged so far to the writer. False if the writer is behind (skipped)."""
        t = self.telemetry
        if not len(t.request_log) and not len(t.action_log):
            return True
        if self._queue.full():
            self.skipped += 1
            return False
        self._index += 1
        batch = (self._index, t.request_log, t.action_log)
        t.request_log, t.action_log = RequestLog(), ActionLog()
        self._queue.put_nowait(batch)
        return True

    def close(self) -> None:
        """Write everything still in memory, then stop the writer thread."""
        while not self.rotate():
            threading.Event().wait(0.01)
        self._queue.put(None)
        self._thread.join()

    def _write_loop(self) -> None:
        from clockwork.telemetry.report import actions_arrow, requests_arrow, write_parquet

        while True:
            item = self._queue.get()
            if item is None:
                return
            index, requests, actions = item
            try:
                paths = [
                    self.directory / f"requests-{index:06d}.parquet",
                    self.directory / f"actions-{index:06d}.parquet",
                ]
                write_parquet(requests_arrow(requests.table()), paths[0])
                write_parquet(actions_arrow(actions.table()), paths[1])
                self.written.extend(paths)
                while len(self.written) > 2 * self.keep_files:
                    self.written.pop(0).unlink(missing_ok=True)
            except OSError as e:
                # a full or failing disk loses log rows, never requests
                log.warning("could not write log files %06d: %s", index, e)
