"""Rotating controller log files: rows land in numbered Parquet files, none lost, none twice."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clockwork.core.requests import InferRequest, Response, ResponseStatus
from clockwork.service.log_files import LogFiles
from clockwork.service.telemetry import ControllerTelemetry


def answer(t: ControllerTelemetry, rid: int) -> None:
    t.on_request(InferRequest(rid, "m", rid, rid + 100))
    t.on_response(Response(rid, "m", ResponseStatus.SUCCESS, rid + 10, "", 1, 1, False))


def test_rotation_writes_every_row_once(tmp_path: Path) -> None:
    t = ControllerTelemetry()
    files = LogFiles(t, tmp_path / "logs", keep_files=10)
    for rid in range(5):
        answer(t, rid)
    assert files.rotate()
    for rid in range(5, 8):
        answer(t, rid)
    files.close()
    written = sorted((tmp_path / "logs").glob("requests-*.parquet"))
    assert [p.name for p in written] == ["requests-000001.parquet", "requests-000002.parquet"]
    ids = [i for p in written for i in pq.read_table(p).column("request_id").to_pylist()]
    assert ids == list(range(8))
    assert len(t.request_log) == 0


def test_only_the_newest_files_are_kept(tmp_path: Path) -> None:
    t = ControllerTelemetry()
    files = LogFiles(t, tmp_path, keep_files=2)
    for rid in range(4):
        answer(t, rid)
        while not files.rotate():
            pass
    files.close()
    names = sorted(p.name for p in tmp_path.glob("requests-*.parquet"))
    assert names == ["requests-000003.parquet", "requests-000004.parquet"]


def test_a_slow_writer_makes_rotation_skip_not_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clockwork.telemetry import report

    release = threading.Event()
    real = report.write_parquet

    def slow(table: object, path: Path) -> None:
        release.wait(10)
        real(table, path)

    monkeypatch.setattr(report, "write_parquet", slow)
    t = ControllerTelemetry()
    files = LogFiles(t, tmp_path, max_pending=1)
    answer(t, 1)
    assert files.rotate()  # the writer takes it and blocks
    deadline = time.monotonic() + 5
    while not files._queue.empty() and time.monotonic() < deadline:
        time.sleep(0.001)
    answer(t, 2)
    assert files.rotate()  # waits in the queue
    answer(t, 3)
    assert not files.rotate()  # writer behind: skipped at once, rows stay in memory
    assert files.skipped == 1 and len(t.request_log) == 1
    release.set()
    files.close()
    ids = sorted(
        i
        for p in tmp_path.glob("requests-*.parquet")
        for i in pq.read_table(p).column("request_id").to_pylist()
    )
    assert ids == [1, 2, 3]
